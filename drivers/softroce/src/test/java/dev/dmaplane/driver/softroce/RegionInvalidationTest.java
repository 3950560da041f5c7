package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * A memory region's key named by a SEND_WITH_INV or a LOCAL_INV between the two HCAs, answered as rdma_rxe answers
 * it: {@code rxe_invalidate_mr} invalidates only {@code IB_MR_TYPE_MEM_REG} regions, never a user region. At the
 * responder ({@code rxe_resp.c} {@code execute}: the bytes placed, then {@code invalidate_rkey} fails,
 * {@code RESPST_ERR_INVALIDATE_RKEY}, class J) the receive completes with REM_INV_REQ_ERR and the QP goes to ERR,
 * but no NAK syndrome is set, so {@code acknowledge} sends a plain ACK and the requester's SEND_WITH_INV completes
 * with SUCCESS. On the requester ({@code rxe_do_local_ops}) a LOCAL_INV completes with LOC_QP_OP_ERR and the QP goes
 * to ERR. Either way the region stays valid, and deregisters as any region does.
 */
@Timeout(60)
class RegionInvalidationTest {
    private final Hcas h = new Hcas();
    private static final byte[] DATA = "a region no verb can invalidate".getBytes();

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    /** An RDMA WRITE of {@code DATA} over a fresh pair into b's region {@code mr} at {@code off}, its status. */
    private WcStatus write(long off, MemoryRegion mr) {
        h.a.write(0, DATA);
        h.pair()[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, DATA.length)), SIGNALED, h.b.buf + off,
                mr.rkey()));
        return Hcas.one(h.a.cq).status();
    }

    @Test
    void aSendWithInvalidateOfARegionsKeyFailsTheReceiveAndIsAcknowledged() {
        QueuePair[] p = h.pair();
        p[1].postRecv(RecvWr.of(5, h.b.sge(0, 64)));
        h.a.write(0, "8 bytes!".getBytes());
        p[0].postSend(new SendWr.SendWithInv(1, List.of(h.a.sge(0, 8)), SIGNALED, h.b.mr.rkey()));
        WorkCompletion s = Hcas.one(h.a.cq);
        assertEquals(List.of(1L, WcStatus.SUCCESS), List.of(s.wrId(), s.status()), "class J: a plain ACK");
        WorkCompletion r = Hcas.one(h.b.cq);
        assertEquals(List.of(5L, WcStatus.REM_INV_REQ_ERR), List.of(r.wrId(), r.status()), r.toString());
        eventually(() -> p[1].query().qpState() == QpState.ERR, Hcas.WAIT, "the responder's QP in ERR");
        assertEquals(QpState.RTS, p[0].query().qpState(), "the requester got an ACK");

        assertEquals(WcStatus.SUCCESS, write(4096, h.b.mr), "the region was not invalidated");
        assertArrayEquals(DATA, h.b.read(4096, DATA.length));
    }

    @Test
    void aLocalInvalidateOfARegionsKeyIsALocalQpOperationError() {
        QueuePair[] p = h.pair();
        p[1].postSend(new SendWr.LocalInv(7, SIGNALED, h.b.mr.lkey()));
        WorkCompletion w = Hcas.one(h.b.cq);
        assertEquals(List.of(WcOpcode.LOCAL_INV, WcStatus.LOC_QP_OP_ERR), List.of(w.opcode(), w.status()),
                w.toString());
        eventually(() -> p[1].query().qpState() == QpState.ERR, Hcas.WAIT, "the QP in ERR");

        assertEquals(WcStatus.SUCCESS, write(8192, h.b.mr), "the region was not invalidated");
        assertArrayEquals(DATA, h.b.read(8192, DATA.length));
    }

    @Test
    void aRegionWhoseInvalidationWasRefusedDeregisters() {
        MemoryRegion r = h.b.pd.regMr(h.b.buf + (1 << 20), 1 << 20, Hcas.ALL);
        long pinned = h.b.mm.pinnedPages();
        QueuePair[] p = h.pair();
        p[1].postSend(new SendWr.LocalInv(7, SIGNALED, r.lkey()));
        assertEquals(WcStatus.LOC_QP_OP_ERR, Hcas.one(h.b.cq).status());
        p = h.pair();
        p[1].postRecv(RecvWr.of(5, new Sge(h.b.buf + (1 << 20), 64, r.lkey())));
        p[0].postSend(new SendWr.SendWithInv(1, List.of(h.a.sge(0, 8)), SIGNALED, r.rkey()));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertEquals(WcStatus.REM_INV_REQ_ERR, Hcas.one(h.b.cq).status());
        r.destroy();
        assertEquals(pinned - 256, h.b.mm.pinnedPages(), "its 256 pages unpinned");
        assertEquals(WcStatus.REM_ACCESS_ERR, write(1 << 20, r), "its key names nothing now");
    }
}
