package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.rdma.loopback.LoopbackProvider;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AddressHandle;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.MemoryWindow;
import dev.dmaplane.rdma.verbs.MwBindInfo;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.rdma.verbs.UdDestination;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcFlags;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.INLINE;
import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.rdma.verbs.SendFlags.SOLICITED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Posting and completing, over the loopback test HCA: {@code ibv_post_send(3)} and {@code ibv_post_recv(3)}
 * validation as the providers do it ({@code validate_send_wr} and the opcode table of {@code rxe_opcode.c}: QP
 * state, opcode per QP type, SGE count, inline size, atomic size and alignment, UD destination, queue full with
 * {@code bad_wr}), and {@code ibv_poll_cq(3)} completions ({@code ib_wc_status} and {@code ib_wc_opcode} values,
 * byte counts, immediate data, GRH on UD, unsignaled sends), the IBTA error behaviour (a failed RC send moves the
 * QP to ERR and flushes everything outstanding with WR_FLUSH_ERR, signaled or not; a responder access error is a
 * class C error for the responder's QP too), and SQD draining with SQ_DRAINED.
 */
class PostTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private final Fixture f = new Fixture();
    private final VerbsContext ctx = f.open();
    private final ProtectionDomain pd = ctx.allocPd();
    private final CompletionQueue cq = ctx.createCq(256, null, 0);
    private final long buf = f.alloc(16 * PAGE);
    private final MemoryRegion mr = pd.regMr(buf, 16 * PAGE, Fixture.ALL_REMOTE | Access.MW_BIND);

    @AfterEach
    void close() {
        f.close();
    }

    private Sge sge(long off, long len) {
        return new Sge(buf + off, len, mr.lkey());
    }

    private static SendWr send(long id, int flags, Sge... s) {
        return new SendWr.Send(id, List.of(s), flags, null);
    }

    private static long longAt(byte[] b) {
        return MemorySegment.ofArray(b).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
    }

    @Test
    void rcSendLandsInTheReceiveScatterListAndBothSidesComplete() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 16);
        byte[] msg = "a send from one RC QP to another, gathered from two SGEs, scattered into two".getBytes();
        f.write(buf + 100, msg);
        p[1].postRecv(RecvWr.of(77, sge(PAGE, 10), sge(2 * PAGE + 5, 200)));
        p[0].postSend(send(11, SIGNALED | SOLICITED, sge(100, 30), sge(130, msg.length - 30)));

        List<WorkCompletion> wc = Fixture.poll(cq, 2);
        WorkCompletion recv = wc.stream().filter(w -> w.opcode().isRecv()).findFirst().orElseThrow();
        WorkCompletion sent = wc.stream().filter(w -> !w.opcode().isRecv()).findFirst().orElseThrow();
        assertEquals(11, sent.wrId());
        assertEquals(WcStatus.SUCCESS, sent.status());
        assertEquals(0, sent.status().value());
        assertEquals(WcOpcode.SEND, sent.opcode());
        assertEquals(p[0].qpNum(), sent.qpNum());
        assertEquals(77, recv.wrId());
        assertEquals(WcOpcode.RECV, recv.opcode());
        assertEquals(128, recv.opcode().value());
        assertEquals(msg.length, recv.byteLen());
        assertEquals(p[1].qpNum(), recv.qpNum());
        assertEquals(p[0].qpNum(), recv.srcQp());
        byte[] got = new byte[msg.length];
        System.arraycopy(f.read(buf + PAGE, 10), 0, got, 0, 10);
        System.arraycopy(f.read(buf + 2 * PAGE + 5, msg.length - 10), 0, got, 10, msg.length - 10);
        assertArrayEquals(msg, got);
    }

    /**
     * A refused post names its errno once: {@code ibv_post_send(3)} and {@code ibv_post_recv(3)} return one errno
     * with {@code bad_wr}, so the message is that errno, the bad request and the reason ({@code rxe_post_send}
     * refuses a send before RTS, {@code rxe_post_recv} a receive in RESET), not the errno again in front of the
     * reason.
     */
    @Test
    void aRefusedPostSaysItsErrnoOnce() {
        QueuePair q = pd.createQp(new QpInitAttr(cq, cq, null, new QpCap(4, 4, 1, 1, 0), QpType.RC, false));
        PostException send = assertThrows(PostException.class, () -> q.postSend(send(3, SIGNALED, sge(0, 8))));
        assertEquals("EINVAL: bad_wr #0 (wr_id 3): qp " + q.qpNum() + " is in RESET: sends need RTS",
                send.getMessage());
        PostException recv = assertThrows(PostException.class, () -> q.postRecv(List.of(RecvWr.of(4, sge(0, 8)))));
        assertEquals("EINVAL: bad_wr #0 (wr_id 4): qp " + q.qpNum() + " is in RESET", recv.getMessage());
    }

    @Test
    void unsignaledSendsProduceNoCompletionUnlessSqSigAll() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 16);
        p[1].postRecv(List.of(RecvWr.of(1, sge(0, 64)), RecvWr.of(2, sge(64, 64))));
        p[0].postSend(send(5, 0, sge(512, 8)));
        List<WorkCompletion> wc = cq.poll(8);
        assertEquals(1, wc.size(), "only the receive completes");
        assertEquals(WcOpcode.RECV, wc.getFirst().opcode());

        QueuePair all = pd.createQp(new QpInitAttr(cq, cq, null, new QpCap(4, 4, 1, 1, 0), QpType.RC, true));
        Fixture.connect(all, p[1].qpNum());
        all.postSend(send(6, 0, sge(512, 8)));
        assertEquals(2, cq.poll(8).size(), "sq_sig_all: every send completes");
    }

    @Test
    void immediateDataAndWritesWithImmediateConsumeAReceive() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 16);
        p[1].postRecv(List.of(RecvWr.of(1, sge(PAGE, 64)), RecvWr.of(2)));
        f.write(buf, "hello".getBytes());
        p[0].postSend(new SendWr.SendWithImm(3, List.of(sge(0, 5)), SIGNALED, 0xCAFEBABE, null));
        p[0].postSend(new SendWr.RdmaWriteWithImm(4, List.of(sge(0, 5)), SIGNALED, buf + 3 * PAGE, mr.rkey(), 0x1234));
        List<WorkCompletion> wc = Fixture.poll(cq, 4);
        WorkCompletion r1 = wc.stream().filter(w -> w.wrId() == 1).findFirst().orElseThrow();
        assertEquals(WcOpcode.RECV, r1.opcode());
        assertEquals(WcFlags.WITH_IMM, r1.wcFlags() & WcFlags.WITH_IMM);
        assertEquals(0xCAFEBABE, r1.immData());
        WorkCompletion r2 = wc.stream().filter(w -> w.wrId() == 2).findFirst().orElseThrow();
        assertEquals(WcOpcode.RECV_RDMA_WITH_IMM, r2.opcode());
        assertEquals(129, r2.opcode().value());
        assertEquals(0x1234, r2.immData());
        assertEquals(5, r2.byteLen());
        assertEquals(WcOpcode.RDMA_WRITE, wc.stream().filter(w -> w.wrId() == 4).findFirst().orElseThrow().opcode());
        assertArrayEquals("hello".getBytes(), f.read(buf + 3 * PAGE, 5));
    }

    @Test
    void rdmaWriteReadAndAtomicsWorkOnRealBytes() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 16);
        byte[] data = new byte[3000];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i * 7 + 1);
        }
        f.write(buf, data);
        long remote = buf + 5 * PAGE - 1000; // crosses a page
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(sge(0, 3000)), SIGNALED, remote, mr.rkey()));
        p[0].postSend(new SendWr.RdmaRead(2, List.of(sge(8 * PAGE, 1000), sge(9 * PAGE, 2000)), SIGNALED, remote, mr.rkey()));
        f.write(buf + 10 * PAGE, MemorySegment.ofArray(new long[]{41}).toArray(ValueLayout.JAVA_BYTE));
        long counter = buf + 10 * PAGE;
        p[0].postSend(new SendWr.AtomicFetchAndAdd(3, List.of(sge(11 * PAGE, 8)), SIGNALED, counter, mr.rkey(), 1));
        p[0].postSend(new SendWr.AtomicCmpAndSwp(4, List.of(sge(11 * PAGE + 8, 8)), SIGNALED, counter, mr.rkey(), 42, 1000));
        p[0].postSend(new SendWr.AtomicCmpAndSwp(5, List.of(sge(11 * PAGE + 16, 8)), SIGNALED, counter, mr.rkey(), 42, 7));
        List<WorkCompletion> wc = Fixture.poll(cq, 5);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertEquals(List.of(WcOpcode.RDMA_WRITE, WcOpcode.RDMA_READ, WcOpcode.FETCH_ADD, WcOpcode.COMP_SWAP, WcOpcode.COMP_SWAP),
                wc.stream().map(WorkCompletion::opcode).toList());
        assertEquals(3000, wc.get(1).byteLen());
        assertEquals(8, wc.get(2).byteLen());
        assertArrayEquals(data, f.read(remote, 3000));
        byte[] back = new byte[3000];
        System.arraycopy(f.read(buf + 8 * PAGE, 1000), 0, back, 0, 1000);
        System.arraycopy(f.read(buf + 9 * PAGE, 2000), 0, back, 1000, 2000);
        assertArrayEquals(data, back);
        assertEquals(41, longAt(f.read(buf + 11 * PAGE, 8)), "fetch-and-add returns the old value");
        assertEquals(42, longAt(f.read(buf + 11 * PAGE + 8, 8)), "compare-and-swap returns the old value");
        assertEquals(1000, longAt(f.read(buf + 11 * PAGE + 16, 8)));
        assertEquals(1000, longAt(f.read(counter, 8)), "the second swap found 1000, not 42");
    }

    @Test
    void inlineDataIsTakenAtPostTimeWithoutLookingAtTheKey() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 16);
        p[1].postRecv(RecvWr.of(1, sge(PAGE, 64)));
        LoopbackProvider hca = f.provider();
        hca.pause();
        f.write(buf, "inline!".getBytes());
        p[0].postSend(send(2, SIGNALED | INLINE, new Sge(buf, 7, 0xDEAD)));
        f.write(buf, "changed".getBytes());
        hca.resume((HwQp) p[0]);
        Fixture.poll(cq, 2);
        assertArrayEquals("inline!".getBytes(), f.read(buf + PAGE, 7));
    }

    @Test
    void postSendRefusalsNameTheBadRequest() {
        QueuePair rc = pd.createQp(Fixture.qpInit(cq, QpType.RC, 4));
        PostException e = assertThrows(PostException.class, () -> rc.postSend(send(1, 0)));
        assertEquals(Errno.EINVAL, e.errno(), "RESET: sends need RTS");
        rc.modify(Fixture.toInit(QpType.RC));
        assertEquals(Errno.EINVAL, assertThrows(PostException.class, () -> rc.postSend(send(1, 0))).errno(), "INIT");
        rc.modify(Fixture.toRtr(QpType.RC, rc.qpNum()));
        assertEquals(Errno.EINVAL, assertThrows(PostException.class, () -> rc.postSend(send(1, 0))).errno(), "RTR");
        rc.modify(Fixture.toRts(QpType.RC));

        QueuePair[] uc = Fixture.pair(pd, cq, QpType.UC, 4);
        QueuePair[] ud = Fixture.pair(pd, cq, QpType.UD, 4);
        AddressHandle ah = pd.createAh(AhAttr.roce(Gid.parse("fd00::1"), 2, 1));
        MemoryWindow mw1 = pd.allocMw(MwType.TYPE_1);
        Object[][] cases = {
                {uc[0], new SendWr.RdmaRead(1, List.of(sge(0, 8)), 0, buf, mr.rkey()), "RDMA read on UC"},
                {uc[0], new SendWr.AtomicFetchAndAdd(1, List.of(sge(0, 8)), 0, buf, mr.rkey(), 1), "atomic on UC"},
                {ud[0], new SendWr.RdmaWrite(1, List.of(sge(0, 8)), 0, buf, mr.rkey()), "RDMA write on UD"},
                {ud[0], new SendWr.SendWithInv(1, List.of(), 0, mr.rkey()), "send with invalidate on UD"},
                {ud[0], new SendWr.LocalInv(1, 0, mr.rkey()), "local invalidate on UD"},
                {ud[0], send(1, 0, sge(0, 8)), "UD send without destination"},
                {rc, send(1, 0, sge(0, 1), sge(1, 1), sge(2, 1), sge(3, 1), sge(4, 1)), "5 SGEs, max_send_sge 4"},
                {rc, new SendWr.AtomicFetchAndAdd(1, List.of(sge(0, 4)), 0, buf, mr.rkey(), 1), "atomic of 4 bytes"},
                {rc, new SendWr.AtomicCmpAndSwp(1, List.of(), 0, buf, mr.rkey(), 0, 1), "atomic of 0 bytes (no SGE)"},
                {rc, new SendWr.AtomicFetchAndAdd(1, List.of(sge(0, 0)), 0, buf, mr.rkey(), 1), "atomic of a 0-byte SGE"},
                {rc, new SendWr.AtomicCmpAndSwp(1, List.of(sge(0, 8)), 0, buf + 4, mr.rkey(), 0, 1), "misaligned atomic"},
                {rc, send(1, INLINE, sge(0, 65)), "inline beyond max_inline_data 64"},
                {rc, new SendWr.RdmaRead(1, List.of(sge(0, 8)), INLINE, buf, mr.rkey()), "inline RDMA read"},
                {rc, send(1, 1 << 6), "unknown send flag"},
                {rc, new SendWr.BindMw(1, List.of(sge(0, 8)), 0, mw1, 0, new MwBindInfo(mr, buf, 8, Access.REMOTE_READ)), "BIND_MW with an SGE"},
                {rc, new SendWr.BindMw(1, 0, mw1, 0, new MwBindInfo(mr, buf, 8, Access.REMOTE_READ)), "BIND_MW of a type 1 window"},
        };
        for (Object[] k : cases) {
            QueuePair qp = (QueuePair) k[0];
            SendWr wr = (SendWr) k[1];
            PostException x = assertThrows(PostException.class, () -> qp.postSend(wr), (String) k[2]);
            assertEquals(Errno.EINVAL, x.errno(), k[2] + ": " + x.getMessage());
            assertSame(wr, x.badWr());
            assertEquals(0, x.badIndex());
        }
        assertTrue(cq.poll(64).isEmpty(), "nothing refused was posted");
        ud[0].postSend(new SendWr.Send(1, List.of(sge(0, 8)), 0, new UdDestination(ah, ud[1].qpNum(), 0x11111111)));
    }

    /** Objects destroyed while the application still holds them: every use is EINVAL naming what is gone. */
    @Test
    void destroyedQueuePairsAndAddressHandlesStillReferencedAreRefused() {
        QueuePair[] ud = Fixture.pair(pd, cq, QpType.UD, 4);
        AddressHandle ah = pd.createAh(AhAttr.roce(Gid.parse("fd00::1"), 2, 1));
        ah.destroy();
        SendWr viaGoneAh = new SendWr.Send(1, List.of(sge(0, 8)), SIGNALED, new UdDestination(ah, ud[1].qpNum(), 0x11111111));
        PostException e = assertThrows(PostException.class, () -> ud[0].postSend(viaGoneAh));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("address handle") && e.getMessage().contains("destroyed"), e.getMessage());
        assertEquals(0, ((HwQp) ud[0]).sendOutstanding(), "nothing posted");

        QueuePair[] rc = Fixture.pair(pd, cq, QpType.RC, 4);
        rc[0].destroy();
        ErrnoException post = assertThrows(ErrnoException.class, () -> rc[0].postSend(send(2, SIGNALED, sge(0, 8))));
        assertEquals(Errno.EINVAL, post.errno());
        assertTrue(post.getMessage().contains("destroyed"), post.getMessage());
        ErrnoException recv = assertThrows(ErrnoException.class, () -> rc[0].postRecv(RecvWr.of(3, sge(0, 8))));
        assertEquals(Errno.EINVAL, recv.errno());
        ErrnoException modify = assertThrows(ErrnoException.class,
                () -> rc[0].modify(QpAttr.builder().state(QpState.ERR).build()));
        assertEquals(Errno.EINVAL, modify.errno());
        assertTrue(modify.getMessage().contains("destroyed"), modify.getMessage());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, rc[0]::destroy).errno(), "destroyed twice");
        assertTrue(cq.poll(64).isEmpty(), "no completion from anything refused");
    }

    @Test
    void aFullSendQueueRefusesWithEnomemAfterPostingWhatFits() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 4);
        LoopbackProvider hca = f.provider();
        hca.pause();
        List<SendWr> six = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            six.add(new SendWr.RdmaWrite(i, List.of(sge(i * 8, 8)), SIGNALED, buf + PAGE + i * 8, mr.rkey()));
        }
        PostException e = assertThrows(PostException.class, () -> p[0].postSend(six));
        assertEquals(Errno.ENOMEM, e.errno());
        assertEquals(4, e.badIndex());
        assertSame(six.get(4), e.badWr());
        assertEquals(4, ((HwQp) p[0]).sendOutstanding(), "the four before bad_wr were posted");
        hca.resume((HwQp) p[0]);
        assertEquals(List.of(0L, 1L, 2L, 3L), Fixture.poll(cq, 4).stream().map(WorkCompletion::wrId).toList());
    }

    @Test
    void postRecvRefusals() {
        QueuePair qp = pd.createQp(Fixture.qpInit(cq, QpType.RC, 2));
        assertEquals(Errno.EINVAL, assertThrows(PostException.class, () -> qp.postRecv(RecvWr.of(1))).errno(), "RESET");
        qp.modify(Fixture.toInit(QpType.RC));
        qp.postRecv(RecvWr.of(1, sge(0, 8)));
        PostException many = assertThrows(PostException.class,
                () -> qp.postRecv(RecvWr.of(2, sge(0, 1), sge(1, 1), sge(2, 1), sge(3, 1), sge(4, 1))));
        assertEquals(Errno.EINVAL, many.errno());
        PostException full = assertThrows(PostException.class, () -> qp.postRecv(List.of(RecvWr.of(3), RecvWr.of(4))));
        assertEquals(Errno.ENOMEM, full.errno());
        assertEquals(1, full.badIndex(), "RECV in INIT is allowed: one fitted");
        var srq = pd.createSrq(new SrqAttr(8, 1, 0));
        QueuePair onSrq = pd.createQp(new QpInitAttr(cq, cq, srq, new QpCap(1, 0, 1, 0, 0), QpType.RC, false));
        onSrq.modify(Fixture.toInit(QpType.RC));
        assertEquals(Errno.EINVAL, assertThrows(PostException.class, () -> onSrq.postRecv(RecvWr.of(5))).errno(),
                "a QP on an SRQ takes no receives of its own");
    }

    @Test
    void aRemoteAccessErrorFailsTheRequestFlushesTheRestAndBreaksTheResponder() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 16);
        p[1].postRecv(RecvWr.of(100, sge(PAGE, 64)));
        LoopbackProvider hca = f.provider();
        hca.pause();
        int badKey = mr.rkey() ^ 0x80;
        p[0].postSend(List.of(
                new SendWr.RdmaWrite(1, List.of(sge(0, 8)), 0, buf, badKey),
                send(2, 0, sge(0, 8)),
                send(3, SIGNALED, sge(0, 8))));
        hca.resume((HwQp) p[0]);
        List<WorkCompletion> all = Fixture.poll(cq, 4);
        List<WorkCompletion> wc = all.stream().filter(w -> w.qpNum() == p[0].qpNum()).toList();
        assertEquals(WcStatus.REM_ACCESS_ERR, wc.get(0).status(), "an unsignaled request that fails completes");
        assertEquals(10, wc.get(0).status().value());
        assertEquals(1, wc.get(0).wrId());
        assertEquals(List.of(WcStatus.WR_FLUSH_ERR, WcStatus.WR_FLUSH_ERR), List.of(wc.get(1).status(), wc.get(2).status()),
                "the rest flush, signaled or not, in order");
        assertEquals(List.of(2L, 3L), List.of(wc.get(1).wrId(), wc.get(2).wrId()));
        assertEquals(5, WcStatus.WR_FLUSH_ERR.value());
        WorkCompletion resp = all.stream().filter(w -> w.qpNum() == p[1].qpNum()).findFirst().orElseThrow();
        assertEquals(100, resp.wrId(), "the responder's QP went to error: its receive flushed");
        assertEquals(WcStatus.WR_FLUSH_ERR, resp.status());
        assertEquals(QpState.ERR, p[0].state());
        assertEquals(QpState.ERR, p[1].state());

        p[0].postSend(send(4, 0, sge(0, 8)));
        assertEquals(WcStatus.WR_FLUSH_ERR, cq.poll(1).getFirst().status(), "posting in ERR completes with a flush");
    }

    @Test
    void aResponderQpThatRefusesRemoteWritesAnswersWithInvalidRequest() {
        QueuePair a = pd.createQp(Fixture.qpInit(cq, QpType.RC, 4));
        QueuePair b = pd.createQp(Fixture.qpInit(cq, QpType.RC, 4));
        Fixture.connect(a, b.qpNum());
        b.modify(Fixture.toInit(QpType.RC).toBuilder().accessFlags(Access.REMOTE_READ).build());
        b.modify(Fixture.toRtr(QpType.RC, a.qpNum()));
        b.modify(Fixture.toRts(QpType.RC));
        a.postSend(new SendWr.RdmaWrite(1, List.of(sge(0, 8)), SIGNALED, buf, mr.rkey()));
        assertEquals(WcStatus.REM_INV_REQ_ERR, cq.poll(1).getFirst().status());
    }

    @Test
    void modifyToErrFlushesEverythingOutstanding() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 16);
        f.provider().pause();
        p[0].postRecv(List.of(RecvWr.of(10, sge(0, 8)), RecvWr.of(11, sge(8, 8))));
        p[0].postSend(List.of(send(20, 0, sge(0, 8)), send(21, SIGNALED, sge(0, 8))));
        p[0].modify(QpAttr.builder().state(QpState.ERR).build());
        List<WorkCompletion> wc = Fixture.poll(cq, 4);
        assertTrue(wc.stream().allMatch(w -> w.status() == WcStatus.WR_FLUSH_ERR && w.qpNum() == p[0].qpNum()));
        assertEquals(List.of(20L, 21L, 10L, 11L), wc.stream().map(WorkCompletion::wrId).toList());
        p[0].postRecv(RecvWr.of(12));
        assertEquals(12, cq.poll(1).getFirst().wrId(), "a receive posted in ERR flushes at once");
    }

    @Test
    void missingReceiveIsAnRnrRetryExhaustion() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 4);
        p[0].postSend(send(1, SIGNALED, sge(0, 8)));
        WorkCompletion w = cq.poll(1).getFirst();
        assertEquals(WcStatus.RNR_RETRY_EXC_ERR, w.status());
        assertEquals(13, w.status().value());
    }

    @Test
    void udDatagramsCarryAGrhAndAWrongQkeyDropsThem() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.UD, 8);
        AddressHandle ah = pd.createAh(AhAttr.roce(Gid.parse("::ffff:10.0.0.1"), 1, 1));
        p[1].postRecv(RecvWr.of(1, sge(PAGE, 40 + 100)));
        f.write(buf, "datagram".getBytes());
        p[0].postSend(new SendWr.Send(2, List.of(sge(0, 8)), SIGNALED, new UdDestination(ah, p[1].qpNum(), 0x11111111)));
        List<WorkCompletion> wc = Fixture.poll(cq, 2);
        WorkCompletion r = wc.stream().filter(w -> w.opcode().isRecv()).findFirst().orElseThrow();
        assertEquals(WcFlags.GRH, r.wcFlags() & WcFlags.GRH);
        assertEquals(48, r.byteLen(), "the GRH's 40 bytes come first");
        assertEquals(p[0].qpNum(), r.srcQp());
        assertArrayEquals("datagram".getBytes(), f.read(buf + PAGE + 40, 8));
        p[0].postSend(new SendWr.Send(3, List.of(sge(0, 8)), SIGNALED, new UdDestination(ah, p[1].qpNum(), 0x2222)));
        List<WorkCompletion> dropped = cq.poll(4);
        assertEquals(1, dropped.size(), "the sender completes; the datagram is dropped");
        assertTrue(dropped.getFirst().isSuccess());
        p[1].postRecv(RecvWr.of(4, sge(PAGE, 48)));
        p[0].postSend(new SendWr.Send(5, List.of(sge(0, 8)), 0, new UdDestination(ah, p[1].qpNum(), 0x8000_0000)));
        assertEquals(4, cq.poll(4).getFirst().wrId(), "a Q_Key with its high bit set means the sender's own Q_Key");
    }

    @Test
    void sqdLetsStartedWorkFinishThenRaisesSqDrained() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        HwQp hw = (HwQp) p[0];
        f.provider().pause();
        p[0].postSend(List.of(new SendWr.RdmaWrite(1, List.of(sge(0, 8)), SIGNALED, buf + PAGE, mr.rkey()),
                new SendWr.RdmaWrite(2, List.of(sge(0, 8)), SIGNALED, buf + PAGE, mr.rkey())));
        SendWqe started = hw.nextSend();
        p[0].modify(QpAttr.builder().state(QpState.SQD).enSqdAsyncNotify(true).build());
        assertTrue(p[0].query().sqDraining());
        assertNull(hw.nextSend(), "SQD starts nothing new");
        assertTrue(ctx.pollAsyncEvent().isEmpty());
        hw.completeSend(started, WcStatus.SUCCESS);
        AsyncEvent drained = ctx.pollAsyncEvent().orElseThrow();
        assertEquals(EventType.SQ_DRAINED, drained.type());
        assertSame(p[0], drained.qp().orElseThrow());
        drained.ack();
        assertFalse(p[0].query().sqDraining());
        f.provider().resume();
        p[0].modify(QpAttr.builder().state(QpState.RTS).build());
        assertEquals(List.of(1L, 2L), Fixture.poll(cq, 2).stream().map(WorkCompletion::wrId).toList(),
                "back in RTS the waiting request runs");
    }

    @Test
    void completionsMustComeInOrder() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        HwQp hw = (HwQp) p[0];
        f.provider().pause();
        p[0].postSend(List.of(send(1, SIGNALED), send(2, SIGNALED)));
        SendWqe a = hw.nextSend();
        SendWqe b = hw.nextSend();
        assertEquals(2, hw.sendInFlight());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> hw.completeSend(b, WcStatus.SUCCESS)).errno());
        assertTrue(hw.completeSend(a, WcStatus.SUCCESS));
        assertTrue(hw.completeSend(b, WcStatus.SUCCESS));
        assertFalse(hw.completeSend(b, WcStatus.SUCCESS), "a second completion is ignored");
    }

    @Test
    void aRunOfCompletionsIsTakenInOrderAndStopsAtTheFirstOutOfOrder() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        HwQp hw = (HwQp) p[0];
        f.provider().pause();
        p[0].postSend(List.of(send(1, SIGNALED), send(2, 0), send(3, SIGNALED), send(4, SIGNALED)));
        SendWqe a = hw.nextSend();
        SendWqe b = hw.nextSend();
        SendWqe c = hw.nextSend();
        SendWqe d = hw.nextSend();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> hw.completeSends(List.of(a, c))).errno(),
                "c is not the oldest once a is done");
        assertEquals(3, hw.sendInFlight(), "a was completed before the bad one");
        assertEquals(2, hw.completeSends(List.of(b, c)));
        assertEquals(0, hw.completeSends(List.of(a, b)), "completed already: passed over");
        assertEquals(1, hw.completeSends(List.of(d)));
        assertEquals(List.of(1L, 3L, 4L), Fixture.poll(cq, 3).stream().map(WorkCompletion::wrId).toList(),
                "signaled ones only, in order");
    }
}
