package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.QpStateMachine;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A provider with a QP state machine of its own ({@code RdmaProvider.qpStateMachine}) decides instead of
 * {@code ib_modify_qp_is_ok}, as siw's {@code siw_qp_modify} ({@code drivers/infiniband/sw/siw/siw_qp.c}) decides
 * alone where rxe calls {@code ib_modify_qp_is_ok} ({@code drivers/infiniband/core/verbs.c}). The machine here is
 * siw's rule for an IDLE QP ({@code siw_create_qp} leaves it IDLE, {@code siw_query_qp} reports INIT;
 * {@code siw_qp_nextstate_from_idle} takes ERROR, refuses RTS without a socket and ignores the rest); the core keeps
 * its commit (the flush on ERR) and calls the provider's modify hook with the state the machine chose.
 */
class QpStateMachineTest {
    private final Fixture f = new Fixture();

    @AfterEach
    void close() {
        f.close();
    }

    /** siw's rule for an IDLE QP; ERROR final. */
    private static final QpStateMachine IDLE_RULE = new QpStateMachine() {
        @Override
        public QpState initial() {
            return QpState.INIT;
        }

        @Override
        public QpState next(HwQp qp, QpState from, QpState to, QpAttr attr) {
            if (from == QpState.ERR) {
                return from;
            }
            return switch (to) {
                case RTS -> throw new ErrnoException(Errno.EINVAL, "qp " + qp.qpNum() + ": no socket");
                case ERR -> QpState.ERR;
                default -> from;
            };
        }

        @Override
        public void checkPostSend(HwQp qp, QpState state) {
            if (state != QpState.ERR) {
                throw new ErrnoException(Errno.ENOTCONN, "qp " + qp.qpNum() + " has no connection");
            }
        }

        @Override
        public void checkPostRecv(HwQp qp, QpState state) {
        }
    };

    private QueuePair rc(VerbsContext ctx, CompletionQueue cq) {
        return ctx.allocPd().createQp(Fixture.qpInit(cq, QpType.RC, 8));
    }

    @Test
    void theProvidersMachineDecidesAndTheCoreCommitsWhatItChose() {
        f.provider().nodeType = NodeType.RNIC;
        f.provider().qpStates = IDLE_RULE;
        VerbsContext ctx = f.open();
        CompletionQueue cq = ctx.createCq(16, null, 0);
        QueuePair qp = rc(ctx, cq);
        assertEquals(QpState.INIT, qp.query().qpState(), "where the machine puts a new QP");
        qp.postRecv(List.of(RecvWr.of(7)));

        qp.modify(QpAttr.builder().state(QpState.RTR).accessFlags(Access.REMOTE_WRITE).build());
        assertEquals(QpState.INIT, qp.query().qpState(), "RTR accepted and ignored");
        assertEquals(Access.REMOTE_WRITE, qp.query().qpAccessFlags(), "the attributes are taken all the same");
        qp.modify(QpAttr.builder().state(QpState.RESET).build());
        assertEquals(QpState.INIT, qp.query().qpState(), "RESET accepted and ignored: nothing discarded");
        assertEquals(List.of("INIT -> INIT", "INIT -> INIT"), f.provider().modifies, "the hook gets the chosen state");

        ErrnoException e = assertThrows(ErrnoException.class,
                () -> qp.modify(QpAttr.builder().state(QpState.RTS).accessFlags(Access.REMOTE_READ).build()));
        assertEquals(Errno.EINVAL, e.errno(), "the machine's errno");
        assertTrue(e.getMessage().contains("no socket"), e.getMessage());
        assertEquals(QpState.INIT, qp.query().qpState());
        assertEquals(Access.REMOTE_WRITE, qp.query().qpAccessFlags(), "a refused modify changes nothing");
        assertEquals(2, f.provider().modifies.size(), "and calls no hook");

        qp.modify(QpAttr.builder().state(QpState.ERR).build());
        assertEquals(QpState.ERR, qp.query().qpState());
        List<WorkCompletion> wc = cq.poll(4);
        assertEquals(1, wc.size(), wc.toString());
        assertEquals(7, wc.getFirst().wrId());
        assertEquals(WcStatus.WR_FLUSH_ERR, wc.getFirst().status(), "the core's commit flushed the receive");
        qp.modify(QpAttr.builder().state(QpState.RESET).build());
        assertEquals(QpState.ERR, qp.query().qpState(), "the machine keeps ERR final");
    }

    /**
     * The provider's machine decides which states take work requests, as {@code siw_post_send} refuses a QP without
     * a connection with ENOTCONN where {@code rxe_post_send} answers EINVAL: the refused send is not queued (nothing
     * completes), a receive is taken before RTS, and in ERR the machine lets both through for the core to flush.
     */
    @Test
    void theProvidersMachineDecidesWhichStatesTakeWorkRequests() {
        f.provider().nodeType = NodeType.RNIC;
        f.provider().qpStates = IDLE_RULE;
        VerbsContext ctx = f.open();
        CompletionQueue cq = ctx.createCq(16, null, 0);
        QueuePair qp = rc(ctx, cq);
        PostException e = assertThrows(PostException.class,
                () -> qp.postSend(List.of(new SendWr.Send(1, List.of(), SendFlags.SIGNALED, null))));
        assertEquals(Errno.ENOTCONN, e.errno(), "the machine's errno, not the core's EINVAL");
        assertEquals(0, e.badIndex());
        qp.postRecv(List.of(RecvWr.of(2)));
        assertEquals(List.of(), cq.poll(4), "nothing completes: the send was not queued, the receive waits");

        qp.modify(QpAttr.builder().state(QpState.ERR).build());
        qp.postSend(List.of(new SendWr.Send(3, List.of(), SendFlags.SIGNALED, null)));
        List<WorkCompletion> wc = cq.poll(4);
        assertEquals(List.of(2L, 3L), wc.stream().map(WorkCompletion::wrId).toList(), wc.toString());
        assertTrue(wc.stream().allMatch(w -> w.status() == WcStatus.WR_FLUSH_ERR), wc.toString());
    }

    /**
     * A provider with its own machine gets the checks Linux makes above the driver and no more: {@code modify_qp}
     * ({@code uverbs_cmd.c}) refuses a port that {@code rdma_is_port_valid} refuses, but rxe's value checks
     * ({@code rxe_qp_chk_attr}: a P_Key index past the table, a timeout past 31) and the match of
     * {@code IB_QP_CUR_STATE} with the QP's state are the IB driver's, which siw's {@code siw_verbs_modify_qp} does not
     * make.
     */
    @Test
    void theProvidersMachineGetsOnlyTheCoresValueChecks() {
        f.provider().nodeType = NodeType.RNIC;
        f.provider().qpStates = IDLE_RULE;
        VerbsContext ctx = f.open();
        QueuePair qp = rc(ctx, ctx.createCq(16, null, 0));
        qp.modify(QpAttr.builder().state(QpState.RTR).curState(QpState.RESET).pkeyIndex(4096).timeout(40).build());
        assertEquals(QpState.INIT, qp.query().qpState());
        assertEquals(4096, qp.query().pkeyIndex(), "taken as siw takes it: unchecked");

        ErrnoException e = assertThrows(ErrnoException.class,
                () -> qp.modify(QpAttr.builder().state(QpState.ERR).port(7).build()));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("port 7"), e.getMessage());
        assertEquals(QpState.INIT, qp.query().qpState(), "a refused modify changes nothing");
        assertEquals(List.of("INIT -> INIT"), f.provider().modifies, "and reaches no hook");
    }

    /**
     * {@code _ib_modify_qp} ({@code drivers/infiniband/core/verbs.c}) masks {@code rq_psn} and {@code sq_psn} to 24
     * bits only where {@code rdma_ib_or_roce} holds for the port: an iWARP device keeps the 32-bit values it is
     * given (siw's sequence numbers are TCP's and the MSNs, 32 bits), an InfiniBand or RoCE one gets the BTH's 24.
     */
    @Test
    void psnsAreMaskedTo24BitsOnlyOffIwarp() {
        f.provider().nodeType = NodeType.RNIC;
        f.provider().qpStates = IDLE_RULE;
        VerbsContext ctx = f.open();
        QueuePair qp = rc(ctx, ctx.createCq(16, null, 0));
        qp.modify(QpAttr.builder().state(QpState.RTR).rqPsn(0x8123_4567).sqPsn(0x7FFF_FFFF).build());
        assertEquals(0x8123_4567, qp.query().rqPsn(), "iWARP: rdma_ib_or_roce is false, nothing masked");
        assertEquals(0x7FFF_FFFF, qp.query().sqPsn());
    }

    /** The same modify on a RoCE port: both PSNs masked to 24 bits ({@code _ib_modify_qp}). */
    @Test
    void psnsAreMaskedTo24BitsOnRoce() {
        VerbsContext ctx = f.open();
        QueuePair qp = rc(ctx, ctx.createCq(16, null, 0));
        qp.modify(Fixture.toInit(QpType.RC));
        qp.modify(Fixture.toRtr(QpType.RC, qp.qpNum()).toBuilder().rqPsn(0x8123_4567).build());
        qp.modify(Fixture.toRts(QpType.RC).toBuilder().sqPsn(0x7FFF_FFFF).build());
        assertEquals(0x23_4567, qp.query().rqPsn());
        assertEquals(0xFF_FFFF, qp.query().sqPsn());
    }

    /** Without a machine of its own the provider gets {@code ib_modify_qp_is_ok}: RESET first, RTR -> INIT refused. */
    @Test
    void withoutAMachineTheCoreAppliesTheIbTable() {
        VerbsContext ctx = f.open();
        QueuePair qp = rc(ctx, ctx.createCq(16, null, 0));
        assertEquals(QpState.RESET, qp.query().qpState());
        qp.modify(Fixture.toInit(QpType.RC));
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> qp.modify(QpAttr.builder().state(QpState.RTS).build()));
        assertEquals(Errno.EINVAL, e.errno(), "INIT -> RTS is no transition of the IB table");
        assertEquals(List.of("RESET -> INIT"), f.provider().modifies);
    }
}
