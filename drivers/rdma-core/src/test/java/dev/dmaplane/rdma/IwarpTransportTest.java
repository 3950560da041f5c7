package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.LinkLayer;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.PortState;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WrOpcode;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What the core does differently for an iWARP device ({@code include/rdma/ib_verbs.h} {@code rdma_node_get_transport},
 * {@code drivers/infiniband/core/iwcm.c} {@code iwcm_init_qp_init_attr} / {@code iwcm_init_qp_rts_attr},
 * {@code drivers/infiniband/sw/siw/siw_verbs.c} {@code siw_verbs_modify_qp} and {@code siw_post_send}): the node
 * type tells an RNIC from a CA; an iWARP QP moves with IB_QP_STATE (and access flags) alone, without
 * {@code ib_modify_qp_is_ok}'s IB attributes; only its connection moves it to RTS ({@link HwQp#establish()}); and
 * the provider refuses at post what its wire cannot carry.
 */
class IwarpTransportTest {
    private final Fixture f = new Fixture();

    @AfterEach
    void close() {
        f.close();
    }

    private QueuePair rc(VerbsContext ctx) {
        ProtectionDomain pd = ctx.allocPd();
        CompletionQueue cq = ctx.createCq(16, null, 0);
        return pd.createQp(Fixture.qpInit(cq, QpType.RC, 8));
    }

    @Test
    void theNodeTypeTellsAnRnicFromACa() {
        assertEquals(NodeType.CA, f.device().nodeType());
        assertEquals(NodeType.Transport.IB, f.device().nodeType().transport());
        f.provider().nodeType = NodeType.RNIC;
        assertEquals(NodeType.RNIC, f.device().nodeType());
        assertEquals(NodeType.Transport.IWARP, f.device().nodeType().transport());
        assertEquals(4, NodeType.RNIC.value());
        assertEquals(1, NodeType.Transport.IWARP.value());
    }

    /** {@code siw_query_port}: no P_Keys, CM and device management supported, link layer Ethernet. */
    @Test
    void anIwarpPortHasNoPkeys() {
        PortAttr p = PortAttr.iwarp(PortState.ACTIVE, Mtu.MTU_4096, 1);
        assertEquals(0, p.pkeyTblLen());
        assertEquals(LinkLayer.ETHERNET, p.linkLayer());
        assertEquals(PortAttr.CAP_CM_SUP | PortAttr.CAP_DEVICE_MGMT_SUP, p.portCapFlags());
        assertEquals(0xFFFF_FFFFL, p.maxMsgSize());
        assertEquals(PortAttr.PHYS_LINK_UP, p.physState());
        ErrnoException e = assertThrows(ErrnoException.class, () -> new PortAttr(PortState.ACTIVE, Mtu.MTU_4096,
                Mtu.MTU_4096, 1, -1, 0, 1, 0, LinkLayer.ETHERNET, PortAttr.PHYS_LINK_UP, 1, 1));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("(-1)"), e.getMessage());
    }

    @Test
    void anIwarpQpMovesWithTheStateAloneAndACaQpDoesNot() {
        VerbsContext ctx = f.open();
        QueuePair ib = rc(ctx);
        QpAttr init = QpAttr.builder().state(QpState.INIT).accessFlags(Access.REMOTE_WRITE | Access.REMOTE_READ).build();
        QpAttr rtr = QpAttr.builder().state(QpState.RTR).build();
        ErrnoException e = assertThrows(ErrnoException.class, () -> ib.modify(init));
        assertEquals(Errno.EINVAL, e.errno(), "RC RESET -> INIT needs a P_Key index and a port on IB");

        f.provider().nodeType = NodeType.RNIC;
        QueuePair iw = rc(ctx);
        iw.modify(init);
        iw.modify(rtr);
        assertEquals(QpState.RTR, iw.query().qpState());
        assertEquals(Access.REMOTE_WRITE | Access.REMOTE_READ, iw.query().qpAccessFlags());
        ErrnoException back = assertThrows(ErrnoException.class,
                () -> iw.modify(QpAttr.builder().state(QpState.INIT).build()));
        assertEquals(Errno.EINVAL, back.errno(), "RTR -> INIT is no transition on any transport");
    }

    @Test
    void onlyTheConnectionMovesAnIwarpQpToRts() {
        VerbsContext ctx = f.open();
        QueuePair ib = rc(ctx);
        ib.modify(Fixture.toInit(QpType.RC));
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> ((HwQp) ib).establish()).errno(),
                "a CA's QP is not established by a connection");

        f.provider().nodeType = NodeType.RNIC;
        QueuePair iw = rc(ctx);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> ((HwQp) iw).establish()).errno(),
                "RESET has no connection");
        iw.modify(QpAttr.builder().state(QpState.INIT).accessFlags(Access.REMOTE_WRITE).build());
        assertFalse(((HwQp) iw).establish(), "nothing waits to be sent");
        assertEquals(QpState.RTS, iw.query().qpState());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> ((HwQp) iw).establish()).errno(),
                "RTS is connected already");
    }

    @Test
    void theProviderRefusesAtPostWhatItsWireCannotCarry() {
        f.provider().nodeType = NodeType.RNIC;
        f.provider().sendCheck = (qp, wr) -> {
            if (wr.opcode() == WrOpcode.RDMA_WRITE_WITH_IMM) {
                throw new ErrnoException(Errno.EINVAL, "siw: " + wr.opcode() + " unsupported");
            }
        };
        VerbsContext ctx = f.open();
        QueuePair iw = rc(ctx);
        iw.modify(QpAttr.builder().state(QpState.INIT).accessFlags(Access.REMOTE_WRITE).build());
        ((HwQp) iw).establish();
        PostException e = assertThrows(PostException.class, () -> iw.postSend(List.of(
                new SendWr.RdmaWrite(1, List.of(), 0, 0x1000, 1),
                new SendWr.RdmaWriteWithImm(2, List.of(), 0, 0x1000, 1, 7))));
        assertEquals(Errno.EINVAL, e.errno());
        assertEquals(2, e.badWr().wrId(), "the write before it was posted");
        assertEquals(1, e.badIndex());
    }
}
