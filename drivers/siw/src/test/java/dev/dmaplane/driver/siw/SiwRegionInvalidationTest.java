package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.HwMr;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcFlags;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A region's STag invalidated as Linux siw invalidates it ({@code drivers/infiniband/sw/siw/siw_mem.c}:
 * {@code siw_invalidate_stag} clears {@code stag_valid} of any STag of the QP's PD, lkey and rkey being one STag),
 * by a SEND with Invalidate ({@code siw_rdmap_complete}) or a LOCAL_INV ({@code siw_qp_sq_proc_local},
 * {@code SIW_OP_INVAL_STAG}), and every later access through it refused as {@code siw_check_mem} refuses an invalid
 * STag: a WRITE into it with the DDP Tagged Buffer Error Invalid STag and QP_ACCESS_ERR ({@code siw_proc_write},
 * {@code siw_tagged_error}), a READ of it with the RDMAP Remote Protection Error Invalid STag and QP_REQ_ERR
 * ({@code siw_qp_sq_proc_tx}, {@code siw_rdmap_error}), a Read Response into it with the DDP Invalid STag, the READ
 * failed with LOC_PROT_ERR and QP_ACCESS_ERR ({@code siw_proc_rresp}), a local SGE through its lkey with
 * LOC_QP_OP_ERR, QP_FATAL and the Local Catastrophic TERMINATE ({@code siw_check_sgl_tx}, {@code siw_qp_sq_process}).
 * Another PD's region is refused ({@code -EACCES}) and stays valid. Nothing makes a user region's STag valid again
 * ({@code siw_fastreg_mr} serves fast-registration regions only); deregistration gives everything back.
 */
@Timeout(60)
class SiwRegionInvalidationTest {
    private static final long TARGET = 2L << 20;
    private static final int TARGET_LEN = 64 << 10;
    private static final byte[] MARK = "bytes no access may reach".getBytes();

    private final SiwHosts h = new SiwHosts(71, 72);

    @TempDir
    Path dir;

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /**
     * b's region over {@code [TARGET, TARGET + 64 KiB)} of its buffer holding {@code MARK}, invalidated by a SEND with
     * Invalidate from a: the send completes, the receive completes with the bytes, WITH_INV and the STag.
     */
    private MemoryRegion invalidatedByTheSend(QueuePair[] p) {
        MemoryRegion target = h.b.pd.regMr(h.b.buf + TARGET, TARGET_LEN, SiwHosts.ALL);
        h.b.write(TARGET, MARK);
        p[1].postRecv(List.of(RecvWr.of(8, h.b.sge(0, 64))));
        byte[] note = "invalidate it".getBytes();
        h.a.write(0, note);
        p[0].postSend(new SendWr.SendWithInv(1, List.of(h.a.sge(0, note.length)), SIGNALED, target.rkey()));
        assertEquals(WcStatus.SUCCESS, SiwHosts.one(h.a.cq).status());
        WorkCompletion r = SiwHosts.one(h.b.cq);
        assertEquals(List.of(8L, WcStatus.SUCCESS, (long) note.length, WcFlags.WITH_INV, target.rkey()),
                List.of(r.wrId(), r.status(), r.byteLen(), r.wcFlags() & WcFlags.WITH_INV, r.invalidatedRkey()),
                r.toString());
        assertArrayEquals(note, h.b.read(0, note.length));
        assertFalse(((HwMr) target).isStagValid());
        return target;
    }

    /** A WRITE from a into the region b's receive invalidated: the TERMINATE b sends ends both QPs. */
    private MemoryRegion writeAfterTheSend(QueuePair[] p) {
        p[0].postRecv(List.of(RecvWr.of(7, h.a.sge(1 << 20, 64))));
        MemoryRegion target = invalidatedByTheSend(p);
        p[0].postSend(new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 4096)), SIGNALED, h.b.buf + TARGET, target.rkey()));
        WorkCompletion w = SiwHosts.one(h.a.cq);
        assertEquals(List.of(2L, WcStatus.SUCCESS), List.of(w.wrId(), w.status()),
                "handed to TCP: iWARP acknowledges nothing");
        WorkCompletion flushed = SiwHosts.one(h.a.cq);
        assertEquals(List.of(7L, WcStatus.WR_FLUSH_ERR), List.of(flushed.wrId(), flushed.status()),
                "the TERMINATE moved the writer to ERR");
        SiwTerminateTest.closedByTerminate(h.a, p[0]);
        assertEquals(EventType.QP_ACCESS_ERR, h.b.asyncEvent().type(),
                "siw_proc_write: siw_check_mem refused a region siw found");
        SiwTerminateTest.closedAfterItsTerminate(h.b, p[1]);
        assertArrayEquals(MARK, h.b.read(TARGET, MARK.length), "nothing placed");
        assertEquals(1, SiwHosts.counter(h.db, "dmaplane_terminate_sent"));
        assertEquals(1, SiwHosts.counter(h.da, "dmaplane_terminate_received"));
        return target;
    }

    /**
     * A SEND with Invalidate naming a region of the receiver's PD invalidates it (Linux siw; rxe would refuse it),
     * and a WRITE into it then gets the TERMINATE siw sends for an invalid STag: DDP layer, Tagged Buffer Error,
     * Invalid STag, with QP_ACCESS_ERR at the responder; the writer's WRITE had completed, its receive is flushed and
     * its consumer gets CLOSE alone. The invalidated region then deregisters, unpinning its pages.
     */
    @Test
    void aWriteIntoARegionASendWithInvalidateInvalidatedIsTerminated() {
        long pinned = h.b.mm.pinnedPages();
        MemoryRegion target = writeAfterTheSend(h.pair());
        assertEquals(pinned + TARGET_LEN / 4096, h.b.mm.pinnedPages());
        target.destroy();
        assertEquals(pinned, h.b.mm.pinnedPages(), "the invalidated region unpinned at deregistration");
    }

    /** The same conversation captured and decoded by tshark: the SEND's Invalidate STag, then the TERMINATE. */
    @Test
    void tsharkDecodesTheInvalidateAndTheInvalidStagTerminate() throws Exception {
        ExternalTool tshark = SiwHosts.tshark();
        Path file = dir.resolve("siw-invalidate.pcap");
        h.da.providers.get("siw0").mpa(Mpa.REVISION_1, false);
        h.captureBoth(file);
        MemoryRegion target = writeAfterTheSend(h.pair());
        assertTrue(h.da.pcap("off").contains("closed"));

        // the SEND's 13 bytes are no RPC-over-RDMA message, which Wireshark's heuristic tries on a Send with Invalidate
        String[] read = {"--disable-protocol", "rpcordma", "-r", file.toString()};
        String inv = tshark(tshark, read, "-Y", "iwarp_rdma.opcode == 4", "-T", "fields", "-e",
                "iwarp_rdma.inval_stag");
        assertEquals(List.of((long) target.rkey()), inv.lines().filter(x -> !x.isBlank()).map(Long::decode).toList(),
                inv);
        String term = tshark(tshark, read, "-Y", "iwarp_rdma.opcode == 7", "-T", "fields", "-E", "separator=|", "-e",
                "_ws.malformed", "-e", "iwarp_rdma.term_layer", "-e", "iwarp_rdma.term_etype_ddp", "-e",
                "iwarp_rdma.term_errcode_ddp_tagged");
        assertEquals(List.of("|0x01|0x01|0x00"), term.lines().filter(x -> !x.isBlank()).toList(),
                "DDP layer, Tagged Buffer Error, Invalid STag: " + term);
        String all = tshark(tshark, read, "-T", "fields", "-e", "_ws.malformed", "-e", "frame.number", "-e",
                "_ws.col.Info");
        assertTrue(all.lines().allMatch(x -> x.startsWith("\t")), "no malformed frame: " + all);
    }

    private static String tshark(ExternalTool tshark, String[] read, String... args) throws Exception {
        String[] all = new String[read.length + args.length];
        System.arraycopy(read, 0, all, 0, read.length);
        System.arraycopy(args, 0, all, read.length, args.length);
        return tshark.run(Duration.ofSeconds(60), all);
    }

    /**
     * A READ of the invalidated region: the responder refuses the source when it builds the response
     * ({@code siw_check_sgl_tx}), so the TERMINATE is of the RDMAP layer, Remote Protection Error, Invalid STag; it
     * raises QP_REQ_ERR, reports CLOSE alone and stays in RTS ({@code siw_qp_cm_drop(qp, 0)}); the reader's READ is
     * flushed, its sink untouched.
     */
    @Test
    void aReadOfTheInvalidatedRegionIsARemoteProtectionError() {
        QueuePair[] p = h.pair();
        MemoryRegion target = invalidatedByTheSend(p);
        h.a.write(8192, new byte[MARK.length]);
        p[0].postSend(new SendWr.RdmaRead(2, List.of(h.a.sge(8192, 4096)), SIGNALED, h.b.buf + TARGET,
                target.rkey()));
        WorkCompletion r = SiwHosts.one(h.a.cq);
        assertEquals(List.of(2L, WcStatus.WR_FLUSH_ERR), List.of(r.wrId(), r.status()));
        SiwTerminateTest.closedByTerminate(h.a, p[0]);
        assertArrayEquals(new byte[MARK.length], h.a.read(8192, MARK.length), "no byte of the source came");
        IwCmEvent c = h.b.event();
        assertEquals(List.of(IwCmEvent.Type.CLOSE, Optional.empty()), List.of(c.type(), Optional.ofNullable(c.status())));
        assertEquals(EventType.QP_REQ_ERR, h.b.asyncEvent().type(), "siw_qp_sq_process: a READ RESPONSE failed");
        assertEquals(QpState.RTS, p[1].query().qpState());
        assertEquals(1, SiwHosts.counter(h.db, "dmaplane_terminate_sent"));
    }

    /**
     * A LOCAL_INV of the reader's own sink region, then a READ into it: the LOCAL_INV completes with SUCCESS; the
     * Read Response is refused at its first segment ({@code siw_proc_rresp}: {@code siw_check_sge}), the READ
     * completes with LOC_PROT_ERR, QP_ACCESS_ERR is raised and the TERMINATE (DDP, Tagged Buffer Error, Invalid
     * STag) ends the responder's QP; the reader reports CLOSE alone and ends in ERR.
     */
    @Test
    void aReadResponseIntoARegionALocalInvalidateInvalidatedIsRefused() {
        QueuePair[] p = h.pair();
        long at = 3L << 20;
        MemoryRegion sink = h.a.pd.regMr(h.a.buf + at, TARGET_LEN, SiwHosts.ALL);
        h.a.write(at, MARK);
        p[0].postSend(new SendWr.LocalInv(1, List.of(), SIGNALED, sink.lkey()));
        WorkCompletion inv = SiwHosts.one(h.a.cq);
        assertEquals(List.of(WcOpcode.LOCAL_INV, WcStatus.SUCCESS), List.of(inv.opcode(), inv.status()));
        h.b.write(0, SiwHosts.random(4096, 3));
        p[0].postSend(new SendWr.RdmaRead(2, List.of(new Sge(h.a.buf + at, 4096, sink.lkey())), SIGNALED, h.b.buf,
                h.b.mr.rkey()));
        WorkCompletion r = SiwHosts.one(h.a.cq);
        assertEquals(List.of(2L, WcStatus.LOC_PROT_ERR), List.of(r.wrId(), r.status()), r.toString());
        assertEquals(EventType.QP_ACCESS_ERR, h.a.asyncEvent().type());
        SiwTerminateTest.closedAfterItsTerminate(h.a, p[0]);
        assertArrayEquals(MARK, h.a.read(at, MARK.length), "nothing placed into the invalidated sink");
        SiwTerminateTest.closedByTerminate(h.b, p[1]);
        assertEquals(1, SiwHosts.counter(h.da, "dmaplane_terminate_sent"));
    }

    /**
     * A LOCAL_INV of a region, then a SEND through its lkey, to a raw peer: {@code siw_check_sgl_tx} refuses the SGE
     * (the lkey is the invalidated STag), so the peer reads the TERMINATE of {@code siw_qp_sq_proc_tx}'s
     * {@code tx_error} (RDMAP, Local Catastrophic Error, unspecified) and the end of the stream; the SEND completes
     * with LOC_QP_OP_ERR, QP_FATAL is raised, CLOSE alone, and the QP stays in RTS ({@code siw_qp_cm_drop(qp, 0)}).
     */
    @Test
    void aSendThroughAnInvalidatedLkeyFailsLocally() throws Exception {
        QueuePair qa = h.a.rc();
        MemoryRegion local = h.a.pd.regMr(h.a.buf + TARGET, TARGET_LEN, SiwHosts.ALL);
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            qa.postSend(new SendWr.LocalInv(1, List.of(), SIGNALED, local.lkey()));
            assertEquals(WcStatus.SUCCESS, SiwHosts.one(h.a.cq).status());
            qa.postSend(new SendWr.Send(2, List.of(new Sge(h.a.buf + TARGET, 64, local.lkey())), SIGNALED, null));
            byte[] wire = s.getInputStream().readAllBytes();
            assertEquals(Mpa.fpduLength(Iwarp.UNTAGGED_HDR + Iwarp.TERMINATE_BODY), wire.length,
                    "the TERMINATE, then the end: nothing of the SEND");
            assertEquals(new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_LOCAL_CATASTROPHIC,
                    Terminate.RDMAP_UNSPECIFIED), SiwMpaTerminateTest.terminate(wire));
        }
        IwCmEvent c = h.a.event();
        assertEquals(List.of(IwCmEvent.Type.CLOSE, Optional.empty()), List.of(c.type(), Optional.ofNullable(c.status())));
        WorkCompletion w = SiwHosts.one(h.a.cq);
        assertEquals(List.of(2L, WcStatus.LOC_QP_OP_ERR), List.of(w.wrId(), w.status()), w.toString());
        AsyncEvent e = h.a.asyncEvent();
        e.ack();
        assertEquals(EventType.QP_FATAL, e.type());
        assertEquals(QpState.RTS, qa.query().qpState());
    }

    /**
     * A LOCAL_INV of a region of another PD: {@code siw_invalidate_stag} answers {@code -EACCES}, which
     * {@code siw_qp_sq_process} treats as any failed local operation: LOC_QP_OP_ERR, QP_FATAL, the connection dropped
     * with no TERMINATE set up (the raw peer reads the end alone), CLOSE alone. The region stays valid.
     */
    @Test
    void aLocalInvalidateOfAnotherPdsRegionIsRefusedAndLeavesItValid() throws Exception {
        QueuePair qa = h.a.rc();
        MemoryRegion foreign = h.a.ctx.allocPd().regMr(h.a.buf, SiwHosts.BUF, SiwHosts.ALL);
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            qa.postSend(new SendWr.LocalInv(1, List.of(), SIGNALED, foreign.lkey()));
            assertEquals(0, s.getInputStream().readAllBytes().length, "the end of the stream, no TERMINATE");
        }
        IwCmEvent c = h.a.event();
        assertEquals(List.of(IwCmEvent.Type.CLOSE, Optional.empty()), List.of(c.type(), Optional.ofNullable(c.status())));
        WorkCompletion w = SiwHosts.one(h.a.cq);
        assertEquals(List.of(1L, WcStatus.LOC_QP_OP_ERR), List.of(w.wrId(), w.status()), w.toString());
        assertEquals(EventType.QP_FATAL, h.a.asyncEvent().type());
        assertNull(h.a.events.peek());
        assertTrue(((HwMr) foreign).isStagValid(), "-EACCES changes nothing");
        assertEquals(0, SiwHosts.counter(h.da, "dmaplane_terminate_sent"));
    }
}
