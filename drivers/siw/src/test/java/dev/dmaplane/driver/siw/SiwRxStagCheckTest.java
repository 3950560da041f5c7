package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.HwMr;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.Blocked;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.DataInputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The receive path checks the STag of a message at every DDP segment, as Linux siw does ({@code siw_qp_rx.c},
 * {@code siw_mem.c}): the memory is resolved on a message's first segment and kept ({@code rx_mem(frx)},
 * {@code wqe->mem[]}), but {@code siw_proc_write} calls {@code siw_check_mem} for every segment of a WRITE and
 * {@code siw_proc_send} calls {@code siw_check_sge}, and with it {@code siw_check_mem}, for every piece of every
 * segment of a SEND, and {@code siw_check_mem} looks at {@code stag_valid} first. A region invalidated while its
 * message is under way is therefore refused at the next segment: a WRITE with the DDP Tagged Buffer Error, Invalid
 * STag and QP_ACCESS_ERR ({@code siw_tagged_error(-E_STAG_INVALID)}), a SEND with the DDP Catastrophic Error,
 * QP_ACCESS_ERR and the receive completed with GENERAL_ERR and the bytes of the segments before
 * ({@code siw_rdmap_complete}); then {@code siw_qp_cm_drop(qp, 1)}: CLOSE alone, the QP in ERR. Each from a raw
 * initiator (MPA revision 1, RFC 5044 FPDUs with CRC32C) that sends the whole message in one piece, so that siw reads
 * its segments off the stream together; the responder's consumer invalidates the region with a LOCAL_INV
 * ({@code siw_invalidate_stag}) while the receive thread is held between the second and the third segment.
 */
@Timeout(60)
class SiwRxStagCheckTest {
    private static final int SEG = 4 << 10;
    private static final int SEGS = 4;
    private static final long TARGET = 1L << 20;
    private static final int TARGET_LEN = 64 << 10;

    private final SiwHosts h = new SiwHosts(63, 64);

    @TempDir
    Path dir;
    private final CountDownLatch held = new CountDownLatch(1);
    private final CountDownLatch go = new CountDownLatch(1);

    @AfterEach
    void close() {
        go.countDown();
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /** How a test makes segment {@code i} of a message, {@code last} for the final one. */
    private interface Segment {
        byte[] make(boolean last, int i, byte[] payload);
    }

    /** {@code data} cut into {@link #SEGS} FPDUs of {@link #SEG} payload bytes each, as {@code fpdu} makes them. */
    private static byte[][] segments(byte[] data, Segment fpdu) {
        byte[][] segs = new byte[SEGS][];
        for (int i = 0; i < SEGS; i++) {
            segs[i] = fpdu.make(i == SEGS - 1, i, Arrays.copyOfRange(data, i * SEG, (i + 1) * SEG));
        }
        return segs;
    }

    /**
     * The READ (wr 5) completed with SUCCESS and all of {@code data} placed at {@link #TARGET}, then the LOCAL_INV
     * (wr 9) with SUCCESS; no TERMINATE sent and {@code qb} still in RTS.
     */
    private void readPlacedWholeThenInvalidated(QueuePair qb, byte[] data) {
        List<WorkCompletion> wc = SiwHosts.poll(h.b.cq, 2);
        assertEquals(List.of(5L, WcStatus.SUCCESS, (long) SEGS * SEG, 9L, WcStatus.SUCCESS),
                List.of(wc.get(0).wrId(), wc.get(0).status(), wc.get(0).byteLen(), wc.get(1).wrId(),
                        wc.get(1).status()), wc.toString());
        assertArrayEquals(data, h.b.read(TARGET, SEGS * SEG), "every segment placed");
        assertEquals(0, SiwHosts.counter(h.db, "dmaplane_terminate_sent"));
        assertEquals(QpState.RTS, qb.query().qpState(), "a Read Response placed whole fails nothing");
    }

    /** The first two segments' bytes of {@code data} placed at {@link #TARGET}, nothing of the third or fourth. */
    private void placedUpToTheThirdSegment(byte[] data) {
        assertArrayEquals(Arrays.copyOf(data, 2 * SEG), h.b.read(TARGET, 2 * SEG), "the segments before placed");
        assertArrayEquals(new byte[2 * SEG], h.b.read(TARGET + 2 * SEG, 2 * SEG), "nothing from the third on");
    }

    /** Holds b's receive thread after the {@code n}th FPDU it processed until the test lets it {@link #go}. */
    private void holdAfter(int n) {
        AtomicInteger fpdus = new AtomicInteger();
        h.db.providers.get("siw0").afterFpdu = () -> {
            if (fpdus.incrementAndGet() == n) {
                held.countDown();
                try {
                    go.await(SiwHosts.WAIT.toMillis(), TimeUnit.MILLISECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        };
    }

    /** With b's receive thread held: a LOCAL_INV of {@code region} on {@code qb}, completed with SUCCESS. */
    private void invalidateWhileHeld(QueuePair qb, MemoryRegion region) throws InterruptedException {
        assertTrue(held.await(SiwHosts.WAIT.toMillis(), TimeUnit.MILLISECONDS), "the receive thread never got there");
        qb.postSend(new SendWr.LocalInv(9, List.of(), SIGNALED, region.lkey()));
        WorkCompletion inv = SiwHosts.one(h.b.cq);
        assertEquals(List.of(9L, WcOpcode.LOCAL_INV, WcStatus.SUCCESS), List.of(inv.wrId(), inv.opcode(), inv.status()));
        go.countDown();
    }

    /** The next FPDU siw sends, whole. */
    private static byte[] nextFpdu(DataInputStream in) throws IOException {
        int len = in.readUnsignedShort();
        byte[] f = new byte[Mpa.fpduLength(len)];
        f[0] = (byte) (len >>> 8);
        f[1] = (byte) len;
        in.readFully(f, 2, f.length - 2);
        return f;
    }

    /**
     * A WRITE of four segments into a region its owner invalidates after the second landed: the first two placed, the
     * third refused ({@code siw_proc_write}: {@code siw_check_mem} finds {@code stag_valid} 0) with the DDP Tagged
     * Buffer Error, Invalid STag, carrying the third segment's DDP header, and QP_ACCESS_ERR; the third and fourth
     * segments not placed; CLOSE alone, the QP in ERR, nothing completed.
     */
    @Test
    void aWriteIntoARegionInvalidatedBetweenItsSegmentsFailsAtTheNextSegment() throws Exception {
        writeInvalidatedAfterTheSecondSegment(null);
    }

    /**
     * The same conversation as a capture decoded by tshark (Wireshark's {@code iwarp_ddp_rdmap} dissector): one
     * TERMINATE, DDP layer, Tagged Buffer Error, Invalid STag, M and D set, the third segment's length and DDP header,
     * a good CRC32C.
     */
    @Test
    void tsharkDecodesTheTerminateOfTheThirdSegment() throws Exception {
        SiwHosts.tshark();
        writeInvalidatedAfterTheSecondSegment(dir.resolve("siw-stag-check.pcap"));
    }

    /** {@link #aWriteIntoARegionInvalidatedBetweenItsSegmentsFailsAtTheNextSegment}, decoded into {@code pcap} too. */
    private void writeInvalidatedAfterTheSecondSegment(Path pcap) throws Exception {
        QueuePair qb = h.b.rc();
        MemoryRegion target = h.b.pd.regMr(h.b.buf + TARGET, TARGET_LEN, SiwHosts.ALL);
        byte[] data = SiwHosts.random(SEGS * SEG, 21);
        byte[][] segs = segments(data, (last, i, payload) -> SiwRxPlacementTest.write(last, target.rkey(),
                h.b.buf + TARGET + (long) i * SEG, payload));
        byte[] sent = SiwRxPlacementTest.concat(segs);
        byte[] reply = new byte[Mpa.RR_HDR];
        holdAfter(2);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = SiwRxPlacementTest.connect(h.b, qb, l, reply)) {
            s.getOutputStream().write(sent);
            invalidateWhileHeld(qb, target);
            byte[] term = nextFpdu(new DataInputStream(s.getInputStream()));
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER, Terminate.DDP_T_INVALID_STAG),
                    SiwMpaTerminateTest.terminate(term));
            int copied = 2 + Iwarp.UNTAGGED_HDR + Iwarp.TERMINATE_BODY;
            assertEquals(SEG, ByteBuffer.wrap(term).getShort(copied) & 0xffff, "the DDP Segment Length of the third");
            assertArrayEquals(Arrays.copyOfRange(segs[2], 2, 2 + Iwarp.TAGGED_HDR),
                    Arrays.copyOfRange(term, copied + 2, copied + 2 + Iwarp.TAGGED_HDR),
                    "the TERMINATE carries the DDP header of the third segment, the one refused");
            if (pcap != null) {
                assertEquals("|0x01||0x01|||0x00|||1|1|0|1000|" + SiwTerminateHeadersTest.hex(segs[2], 2,
                        Iwarp.TAGGED_HDR) + "|", SiwTerminateHeadersTest.decode(pcap, s, SiwRxPlacementTest.REQUEST,
                        reply, sent, term));
            }
        }
        assertEquals(EventType.QP_ACCESS_ERR, h.b.asyncEvent().type());
        SiwTerminateTest.closedAfterItsTerminate(h.b, qb);
        placedUpToTheThirdSegment(data);
        assertEquals(List.of(), h.b.cq.poll(1), "a WRITE completes nothing at its responder");
    }

    /**
     * A deregistration begun after the second of four WRITE segments landed: it makes the STag invalid before it
     * waits for the receive path's lease, as {@code siw_mr_drop_mem} clears {@code stag_valid} before it takes the
     * STag off the device, so the third segment is refused as an invalidated STag's (DDP Tagged Buffer Error,
     * Invalid STag, QP_ACCESS_ERR) and the deregistration returns once the WRITE failed, nothing more placed.
     */
    @Test
    void aDeregistrationBetweenTheSegmentsOfAWriteEndsItAtTheNextSegment() throws Exception {
        QueuePair qb = h.b.rc();
        MemoryRegion target = h.b.pd.regMr(h.b.buf + TARGET, TARGET_LEN, SiwHosts.ALL);
        byte[] data = SiwHosts.random(SEGS * SEG, 23);
        byte[][] segs = segments(data, (last, i, payload) -> SiwRxPlacementTest.write(last, target.rkey(),
                h.b.buf + TARGET + (long) i * SEG, payload));
        holdAfter(2);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            s.getOutputStream().write(SiwRxPlacementTest.concat(segs));
            assertTrue(held.await(SiwHosts.WAIT.toMillis(), TimeUnit.MILLISECONDS), "the receive thread never got there");
            Blocked.Call<Void> dereg = Blocked.run("dereg", target::destroy);
            dereg.awaitBlockedIn("dev.dmaplane.rdma.impl.MrImpl.teardown"); // for the receive path's lease
            go.countDown();
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER, Terminate.DDP_T_INVALID_STAG),
                    SiwRxPlacementTest.terminate(new DataInputStream(s.getInputStream())));
            dereg.get();
        }
        assertEquals(EventType.QP_ACCESS_ERR, h.b.asyncEvent().type());
        SiwTerminateTest.closedAfterItsTerminate(h.b, qb);
        placedUpToTheThirdSegment(data);
    }

    /**
     * A SEND of four segments into a receive whose region its owner invalidates after the second landed: the third is
     * refused ({@code siw_proc_send}: {@code siw_check_sge}, then {@code siw_check_mem}) with the DDP Catastrophic
     * Error and QP_ACCESS_ERR; the receive completes with GENERAL_ERR and the bytes of the two segments placed
     * ({@code wqe->processed}); nothing of the third or fourth placed; CLOSE alone, the QP in ERR.
     */
    @Test
    void aSendIntoAReceiveInvalidatedBetweenItsSegmentsFailsAtTheNextSegment() throws Exception {
        QueuePair qb = h.b.rc();
        MemoryRegion target = h.b.pd.regMr(h.b.buf + TARGET, TARGET_LEN, SiwHosts.ALL);
        qb.postRecv(List.of(RecvWr.of(8, new Sge(h.b.buf + TARGET, SEGS * SEG, target.lkey()))));
        byte[] data = SiwHosts.random(SEGS * SEG, 22);
        byte[][] segs = segments(data, (last, i, payload) -> SiwRxPlacementTest.send(last, 1, i * SEG, payload));
        holdAfter(2);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            s.getOutputStream().write(SiwRxPlacementTest.concat(segs));
            invalidateWhileHeld(qb, target);
            DataInputStream in = new DataInputStream(s.getInputStream());
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_CATASTROPHIC, Terminate.DDP_C_UNSPECIFIED),
                    SiwRxPlacementTest.terminate(in));
        }
        WorkCompletion r = SiwHosts.one(h.b.cq);
        assertEquals(List.of(8L, WcStatus.GENERAL_ERR, 2L * SEG), List.of(r.wrId(), r.status(), r.byteLen()),
                r.toString());
        assertEquals(EventType.QP_ACCESS_ERR, h.b.asyncEvent().type());
        SiwTerminateTest.closedAfterItsTerminate(h.b, qb);
        placedUpToTheThirdSegment(data);
    }

    /**
     * A Read Response of four segments whose sink its requester invalidates (LOCAL_INV behind the READ) after the
     * second landed: {@code siw_proc_rresp} checks the sink once, on the first segment ({@code siw_check_sge} only
     * while {@code wqe->mem[0]} is unset), so the rest is placed, the READ completes with SUCCESS and all its bytes,
     * then the LOCAL_INV with SUCCESS; no TERMINATE.
     */
    @Test
    void aReadResponseWhoseSinkIsInvalidatedBetweenItsSegmentsIsPlacedWhole() throws Exception {
        QueuePair qb = h.b.rc();
        MemoryRegion target = h.b.pd.regMr(h.b.buf + TARGET, TARGET_LEN, SiwHosts.ALL);
        byte[] data = SiwHosts.random(SEGS * SEG, 24);
        holdAfter(2);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            qb.postSend(new SendWr.RdmaRead(5, List.of(new Sge(h.b.buf + TARGET, SEGS * SEG, target.lkey())),
                    SIGNALED, 0x1000, 0x77));
            ByteBuffer req = ByteBuffer.wrap(nextFpdu(new DataInputStream(s.getInputStream())));
            assertEquals(Iwarp.OP_READ_REQUEST, req.get(3) & 0x0f, "siw's READ request");
            int sinkStag = req.getInt(2 + Iwarp.UNTAGGED_HDR);
            long sinkTo = req.getLong(2 + Iwarp.UNTAGGED_HDR + 4);
            byte[][] segs = segments(data, (last, i, payload) -> SiwRxPlacementTest.readResponse(last, sinkStag, sinkTo + (long) i * SEG,
                    payload));
            s.getOutputStream().write(SiwRxPlacementTest.concat(segs));
            assertTrue(held.await(SiwHosts.WAIT.toMillis(), TimeUnit.MILLISECONDS), "the receive thread never got there");
            qb.postSend(new SendWr.LocalInv(9, List.of(), SIGNALED, target.lkey()));
            eventually(() -> !((HwMr) target).isStagValid(), SiwHosts.WAIT, "the LOCAL_INV behind the READ executed");
            go.countDown();
            readPlacedWholeThenInvalidated(qb, data);
        }
    }

    /**
     * A Read Response whose sink its requester invalidates (LOCAL_INV behind the READ) after two of its four segments
     * landed and the receive thread went to wait for more of the stream; the peer sends the other two only then.
     * {@code siw_proc_rresp} resolved the sink on the first segment and keeps its memory in {@code wqe->mem[0]} to the
     * READ's end, checking nothing more, however long the segments take: the rest is placed, the READ completes with
     * SUCCESS and all its bytes, then the LOCAL_INV with SUCCESS; no TERMINATE, the QP in RTS.
     */
    @Test
    void aReadResponseSegmentSentAfterTheReceiveThreadWaitedIsPlacedIntoItsInvalidatedSink() throws Exception {
        QueuePair qb = h.b.rc();
        MemoryRegion target = h.b.pd.regMr(h.b.buf + TARGET, TARGET_LEN, SiwHosts.ALL);
        byte[] data = SiwHosts.random(SEGS * SEG, 25);
        AtomicReference<Thread> rx = noteAfter(2);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            byte[][] segs = readFirstHalf(qb, target, s, data, rx);
            qb.postSend(new SendWr.LocalInv(9, List.of(), SIGNALED, target.lkey()));
            eventually(() -> !((HwMr) target).isStagValid(), SiwHosts.WAIT, "the LOCAL_INV behind the READ executed");
            s.getOutputStream().write(SiwRxPlacementTest.concat(segs[2], segs[3]));
            readPlacedWholeThenInvalidated(qb, data);
        }
    }

    /**
     * The sink deregistered while its Read Response waits for its last two segments: {@code siw_dereg_mr} returns at
     * once ({@code siw_mr_drop_mem} clears {@code stag_valid}, takes the STag off the device and drops the region's
     * reference), the READ's reference ({@code wqe->mem[0]}) keeps the pages pinned, the rest is placed into them and
     * the READ completes with SUCCESS; its end drops the last reference ({@code siw_wqe_put_mem}, {@code siw_mem_put}):
     * the pages are unpinned.
     */
    @Test
    void aSinkDeregisteredWhileItsReadResponseWaitsStaysPinnedUntilTheReadEnds() throws Exception {
        QueuePair qb = h.b.rc();
        long pinned = h.b.mm.pinnedPages();
        MemoryRegion target = h.b.pd.regMr(h.b.buf + TARGET, TARGET_LEN, SiwHosts.ALL);
        byte[] data = SiwHosts.random(SEGS * SEG, 26);
        AtomicReference<Thread> rx = noteAfter(2);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            byte[][] segs = readFirstHalf(qb, target, s, data, rx);
            deregistersAtOnce(target);
            assertEquals(pinned + TARGET_LEN / 4096, h.b.mm.pinnedPages(), "the READ keeps the sink's pages pinned");
            s.getOutputStream().write(SiwRxPlacementTest.concat(segs[2], segs[3]));
            WorkCompletion wc = SiwHosts.one(h.b.cq);
            assertEquals(List.of(5L, WcStatus.SUCCESS, (long) SEGS * SEG), List.of(wc.wrId(), wc.status(),
                    wc.byteLen()), wc.toString());
            assertArrayEquals(data, h.b.read(TARGET, SEGS * SEG), "every segment placed");
            assertEquals(pinned, h.b.mm.pinnedPages(), "unpinned once the READ completed");
            assertEquals(QpState.RTS, qb.query().qpState());
        }
    }

    /**
     * A READ flushed while its response waits for its last two segments, by a modify to ERR
     * ({@code siw_qp_modify}: {@code siw_sq_flush}, {@code siw_rq_flush} putting {@code wqe->mem[0]}) or by the QP's
     * destruction: WR_FLUSH_ERR, and the sink's memory let go: it deregisters at once and unpins.
     */
    @ParameterizedTest(name = "flushed by {0}")
    @ValueSource(strings = {"modify to ERR", "destroy"})
    void aReadFlushedWhileItsResponseWaitsLetsGoOfItsSink(String flush) throws Exception {
        QueuePair qb = h.b.rc();
        long pinned = h.b.mm.pinnedPages();
        MemoryRegion target = h.b.pd.regMr(h.b.buf + TARGET, TARGET_LEN, SiwHosts.ALL);
        byte[] data = SiwHosts.random(SEGS * SEG, 27);
        AtomicReference<Thread> rx = noteAfter(2);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            readFirstHalf(qb, target, s, data, rx);
            if (flush.startsWith("modify")) {
                qb.modify(QpAttr.builder().state(QpState.ERR).build());
                WorkCompletion wc = SiwHosts.one(h.b.cq);
                assertEquals(List.of(5L, WcStatus.WR_FLUSH_ERR), List.of(wc.wrId(), wc.status()), wc.toString());
            } else {
                qb.destroy();
            }
            assertEquals(-1, s.getInputStream().read(), "the stream closed, no TERMINATE");
        }
        deregistersAtOnce(target);
        eventually(() -> h.b.mm.pinnedPages() == pinned, SiwHosts.WAIT, "the sink's pages unpinned");
    }

    /**
     * A READ of {@link #SEGS} segments into {@code target}, posted on {@code qb}; the raw peer {@code s} answers with
     * the first two, which b's receive thread places before it waits for more of the stream ({@code rx}, noted
     * after the second FPDU).
     *
     * @return the segments of the response, {@code data} cut
     */
    private byte[][] readFirstHalf(QueuePair qb, MemoryRegion target, Socket s, byte[] data, AtomicReference<Thread> rx)
            throws IOException, InterruptedException {
        qb.postSend(new SendWr.RdmaRead(5, List.of(new Sge(h.b.buf + TARGET, SEGS * SEG, target.lkey())), SIGNALED,
                0x1000, 0x77));
        ByteBuffer req = ByteBuffer.wrap(nextFpdu(new DataInputStream(s.getInputStream())));
        assertEquals(Iwarp.OP_READ_REQUEST, req.get(3) & 0x0f, "siw's READ request");
        int sinkStag = req.getInt(2 + Iwarp.UNTAGGED_HDR);
        long sinkTo = req.getLong(2 + Iwarp.UNTAGGED_HDR + 4);
        byte[][] segs = segments(data, (last, i, payload) -> SiwRxPlacementTest.readResponse(last, sinkStag, sinkTo + (long) i * SEG,
                payload));
        s.getOutputStream().write(SiwRxPlacementTest.concat(segs[0], segs[1]));
        assertTrue(held.await(SiwHosts.WAIT.toMillis(), TimeUnit.MILLISECONDS), "the receive thread never got there");
        awaitWaitingForTheStream(rx.get());
        assertArrayEquals(Arrays.copyOf(data, 2 * SEG), h.b.read(TARGET, 2 * SEG), "the first two placed");
        return segs;
    }

    /** Notes b's receive thread after the {@code n}th FPDU it processed, and lets it go on. */
    private AtomicReference<Thread> noteAfter(int n) {
        AtomicInteger fpdus = new AtomicInteger();
        AtomicReference<Thread> rx = new AtomicReference<>();
        h.db.providers.get("siw0").afterFpdu = () -> {
            if (fpdus.incrementAndGet() == n) {
                rx.set(Thread.currentThread());
                held.countDown();
            }
        };
        return rx;
    }

    /**
     * Waits at most {@link SiwHosts#WAIT} until {@code rx} waits in its selector for more of the stream
     * ({@code Rx.fill}), seen so in two samples of its stack in a row.
     */
    private static void awaitWaitingForTheStream(Thread rx) {
        long deadline = System.nanoTime() + SiwHosts.WAIT.toNanos();
        while (!(selecting(rx.getStackTrace()) && selecting(rx.getStackTrace()))) {
            if (System.nanoTime() - deadline > 0) {
                throw new AssertionError("the receive thread did not wait for the stream within " + SiwHosts.WAIT
                        + ": " + Arrays.toString(rx.getStackTrace()));
            }
            Thread.yield();
        }
    }

    /** Whether {@code stack} is in a selector's {@code select}, called from {@code Rx.fill}. */
    private static boolean selecting(StackTraceElement[] stack) {
        boolean select = false;
        for (StackTraceElement f : stack) {
            String c = f.getClassName();
            if (c.startsWith("sun.nio.ch.") && f.getMethodName().equals("select")) {
                select = true;
            } else if (!c.startsWith("sun.") && !c.startsWith("java.") && !c.startsWith("jdk.")) {
                return select && c.equals(Rx.class.getName()) && f.getMethodName().equals("fill");
            }
        }
        return false;
    }

    /** {@code ibv_dereg_mr} of {@code mr} returns without waiting for the receive path. */
    private static void deregistersAtOnce(MemoryRegion mr) throws InterruptedException {
        Thread dereg = Thread.ofPlatform().name("dereg").start(mr::destroy);
        assertTrue(dereg.join(SiwHosts.WAIT), "ibv_dereg_mr waits for the receive path");
    }
}
