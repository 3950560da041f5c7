package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpAttrMask;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetSocketAddress;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * {@code ibv_query_qp} on siw answers what {@code siw_query_qp} ({@code drivers/infiniband/sw/siw/siw_verbs.c})
 * fills in: the QP's state, its capabilities with {@code SIW_MAX_INLINE} (80) inline bytes, the netdev's path MTU,
 * the depths of the read queues {@code siw_qp_readq_init} ({@code siw_qp.c}) made for the connection (rounded up to
 * powers of two, the IRD reported as {@code max_rd_atomic}, the ORD as {@code max_dest_rd_atomic}) and the fixed
 * access flags LOCAL_WRITE | REMOTE_WRITE | REMOTE_READ. What a modify gave besides (a P_Key index, a port, PSNs,
 * a timeout, other access flags) is taken (siw keeps the access flags for its own checks) and never reported.
 */
@Timeout(60)
class SiwQueryQpTest {
    private static final int FIXED = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
    private final SiwHosts h = new SiwHosts(67, 68);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    @Test
    void aQueryReportsSiwsFixedAccessFlagsAndNoneOfWhatAModifyGave() {
        QueuePair q = h.a.rc();
        q.modify(QpAttr.builder().state(QpState.RTR).accessFlags(Access.REMOTE_WRITE).pkeyIndex(5).port(1)
                .timeout(14).rqPsn(0x1234).sqPsn(0x5678).build());
        QpAttr a = q.query();
        assertEquals(QpState.INIT, a.qpState(), "IDLE, INIT to siw_query_qp");
        assertEquals(FIXED, a.qpAccessFlags(), "fixed, not the REMOTE_WRITE the modify gave");
        assertEquals(0, a.pkeyIndex(), "siw reports no P_Key index");
        assertEquals(0, a.portNum());
        assertEquals(0, a.timeout());
        assertEquals(0, a.rqPsn());
        assertEquals(0, a.sqPsn());
        assertFalse(a.has(QpAttrMask.PKEY_INDEX) || a.has(QpAttrMask.PORT) || a.has(QpAttrMask.TIMEOUT)
                || a.has(QpAttrMask.RQ_PSN) || a.has(QpAttrMask.SQ_PSN), "absent from the mask: 0x"
                + Integer.toHexString(a.mask()));
        assertNull(a.ahAttr(), "no path");
        assertEquals(Mtu.MTU_4096, a.pathMtu(), "ib_mtu_int_to_enum of the loopback's 65536");
        assertEquals(80, a.cap().maxInlineData(), "SIW_MAX_INLINE, not the 64 asked for");
        assertEquals(256, a.cap().maxSendWr());
        assertEquals(6, a.cap().maxRecvSge());
        assertEquals(0, a.maxRdAtomic(), "no read queues before a connection");
        assertEquals(0, a.maxDestRdAtomic());
    }

    /**
     * The read queue depths of a connection negotiated in MPA revision 2 (initiator ORD 3, IRD 5; the responder
     * asks for the same and keeps ORD 3, IRD 5 by {@code relaxed_ird_negotiation}; the initiator takes the
     * responder's IRD 5 as its ORD and ORD 3 as its IRD): {@code siw_qp_readq_init} rounds each up to a power of
     * two, and {@code siw_query_qp} reports {@code irq_size} as {@code max_rd_atomic} and {@code orq_size} as
     * {@code max_dest_rd_atomic}.
     */
    @Test
    void aConnectedQpReportsItsReadQueueDepthsRoundedUp() throws Exception {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 4, h.b.events::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(new byte[0], 3, 5), h.a.events::add);
            IwCmEvent req = SiwHosts.expect(h.b.event(), IwCmEvent.Type.CONNECT_REQUEST);
            req.request().accept(qb.qpNum(), new IwConnParam(new byte[0], 3, 5), h.b.events::add);
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
        }
        QpAttr a = qa.query();
        assertEquals(QpState.RTS, a.qpState());
        assertEquals(4, a.maxRdAtomic(), "irq_size: IRD 3 rounded up");
        assertEquals(8, a.maxDestRdAtomic(), "orq_size: ORD 5 rounded up");
        QpAttr b = qb.query();
        assertEquals(8, b.maxRdAtomic(), "irq_size: IRD 5 rounded up");
        assertEquals(4, b.maxDestRdAtomic(), "orq_size: ORD 3 rounded up");
        assertEquals(FIXED, b.qpAccessFlags());

        qa.modify(QpAttr.builder().state(QpState.ERR).build());
        assertEquals(QpState.ERR, qa.query().qpState());
        assertEquals(4, qa.query().maxRdAtomic(), "the depths stay with the QP after its connection");
    }
}
