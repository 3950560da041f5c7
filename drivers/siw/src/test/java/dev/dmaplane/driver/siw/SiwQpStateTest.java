package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * siw's QP states as Linux siw keeps them ({@code drivers/infiniband/sw/siw}): {@code siw_verbs_modify_qp}
 * ({@code siw_verbs.c}) turns the requested IB state into a siw state ({@code ib_qp_state_to_siw_qp_state}: RESET and
 * INIT are IDLE, SQD CLOSING, SQE TERMINATE), {@code siw_qp_modify} ({@code siw_qp.c}) moves by the QP's siw state,
 * and {@code siw_query_qp} reports it as an IB state ({@code siw_qp_state_to_ib_qp_state}: IDLE is INIT). No
 * {@code ib_modify_qp_is_ok} is involved.
 */
@Timeout(60)
class SiwQpStateTest {
    private final SiwHosts h = new SiwHosts(61, 62);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    private QueuePair fresh() {
        return h.a.pd.createQp(new QpInitAttr(h.a.cq, h.a.cq, null, new QpCap(8, 8, 1, 1, 0), QpType.RC, false));
    }

    /**
     * {@code siw_create_qp} leaves a QP IDLE, which {@code siw_query_qp} reports as INIT, and {@code siw_post_receive}
     * takes receives in IDLE (it refuses only states beyond RTS).
     */
    @Test
    void aNewQpIsIdleWhichAQueryReportsAsInit() {
        QueuePair q = fresh();
        assertEquals(QpState.INIT, q.query().qpState());
        q.postRecv(List.of(RecvWr.of(1, h.a.sge(0, 64))));
    }

    /**
     * {@code siw_qp_nextstate_from_idle} acts on RTS and ERROR only: RESET, INIT (both IDLE), RTR, SQD (CLOSING) and
     * SQE (TERMINATE) asked of an IDLE QP return 0 and leave it IDLE, INIT to a query, as {@code cma_modify_qp_rtr}'s
     * INIT and RTR do on every rdma_connect and rdma_accept ({@code cma.c}).
     */
    @Test
    void everyTargetButRtsAndErrIsAcceptedAndIgnoredOnAnIdleQp() {
        QueuePair q = fresh();
        for (QpState s : List.of(QpState.INIT, QpState.RTR, QpState.RESET, QpState.SQD, QpState.SQE, QpState.RTR)) {
            q.modify(QpAttr.builder().state(s).accessFlags(SiwHosts.ALL).build());
            assertEquals(QpState.INIT, q.query().qpState(), "after " + s);
        }
    }

    /**
     * RTS from IDLE needs the LLP handle, which only the connection manager passes ({@code siw_qp_nextstate_from_idle}:
     * "no socket", {@code -EINVAL}): refused, the QP left IDLE.
     */
    @Test
    void rtsWithoutAConnectionIsEinval() {
        QueuePair q = fresh();
        q.modify(QpAttr.builder().state(QpState.RTR).build());
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> q.modify(QpAttr.builder().state(QpState.RTS).build()));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("no socket"), e.getMessage());
        assertEquals(QpState.INIT, q.query().qpState());
    }

    /**
     * ERROR from IDLE flushes the receive queue ({@code siw_qp_nextstate_from_idle}: {@code siw_rq_flush}), and ERROR
     * is final: {@code siw_qp_modify}'s switch has no case for it, so RESET, INIT, RTR, RTS and SQD return 0 and leave
     * the QP in ERROR.
     */
    @Test
    void errFlushesTheReceivesAndIsFinal() {
        QueuePair q = fresh();
        q.postRecv(List.of(RecvWr.of(9, h.a.sge(0, 64))));
        q.modify(QpAttr.builder().state(QpState.ERR).build());
        assertEquals(QpState.ERR, q.query().qpState());
        WorkCompletion wc = SiwHosts.one(h.a.cq);
        assertEquals(9, wc.wrId());
        assertEquals(WcStatus.WR_FLUSH_ERR, wc.status());
        for (QpState s : List.of(QpState.RESET, QpState.INIT, QpState.RTR, QpState.RTS, QpState.SQD)) {
            q.modify(QpAttr.builder().state(s).build());
            assertEquals(QpState.ERR, q.query().qpState(), "after " + s);
        }
    }

    /**
     * {@code siw_qp_nextstate_from_rts} has no case for IDLE, RTR or RTS: RESET, INIT, RTR and RTS asked of a connected
     * QP return 0 and leave it in RTS on its connection, which goes on carrying data (every byte checked).
     */
    @Test
    void aConnectedQpIgnoresResetInitRtrAndRtsAndKeepsItsConnection() {
        QueuePair[] p = h.pair();
        for (QpState s : List.of(QpState.RESET, QpState.INIT, QpState.RTR, QpState.RTS)) {
            p[0].modify(QpAttr.builder().state(s).build());
            assertEquals(QpState.RTS, p[0].query().qpState(), "after " + s);
        }
        sendCrosses(p, 14);
    }

    /**
     * {@code siw_post_send} ({@code siw_verbs.c}) sends from RTS only: a QP the CM has not connected (IDLE, INIT to a
     * query, also after an ignored RTR) refuses a send with ENOTCONN, the first work request named, and queues nothing,
     * so moving it to ERROR afterwards flushes only the receive it took ({@code siw_post_receive} takes receives up to
     * RTS).
     */
    @Test
    void aSendBeforeTheConnectionIsEnotconnAndNotQueued() {
        QueuePair q = fresh();
        q.postRecv(List.of(RecvWr.of(5, h.a.sge(0, 64))));
        for (QpState asked : List.of(QpState.INIT, QpState.RTR)) {
            q.modify(QpAttr.builder().state(asked).build());
            PostException e = assertThrows(PostException.class, () -> q.postSend(List.of(
                    new SendWr.Send(6, List.of(h.a.sge(0, 64)), SIGNALED, null),
                    new SendWr.Send(7, List.of(h.a.sge(0, 64)), SIGNALED, null))));
            assertEquals(Errno.ENOTCONN, e.errno(), "after " + asked + ": " + e.getMessage());
            assertEquals(0, e.badIndex());
            assertTrue(e.getMessage().contains("IDLE"), e.getMessage());
        }
        assertEquals(List.of(), h.a.cq.poll(4));
        q.modify(QpAttr.builder().state(QpState.ERR).build());
        List<WorkCompletion> wc = SiwHosts.poll(h.a.cq, 1);
        assertEquals(5, wc.getFirst().wrId(), wc.toString());
        assertEquals(List.of(), h.a.cq.poll(4), "no send was queued to flush");
    }

    /**
     * In ERROR {@code siw_post_send} and {@code siw_post_receive} take work requests and complete them at once with
     * WR_FLUSH_ERR ({@code siw_sq_flush_wr}, {@code siw_rq_flush_wr}), what {@code ib_drain_qp} relies on.
     */
    @Test
    void workPostedInErrorIsFlushed() {
        QueuePair[] p = h.pair();
        p[0].modify(QpAttr.builder().state(QpState.ERR).build());
        p[0].postRecv(List.of(RecvWr.of(11, h.a.sge(0, 64))));
        p[0].postSend(new SendWr.Send(12, List.of(h.a.sge(0, 64)), SIGNALED, null));
        List<WorkCompletion> wc = SiwHosts.poll(h.a.cq, 2);
        assertEquals(List.of(11L, 12L), wc.stream().map(WorkCompletion::wrId).toList(), wc.toString());
        assertTrue(wc.stream().allMatch(w -> w.status() == WcStatus.WR_FLUSH_ERR), wc.toString());
    }

    /**
     * {@code siw_verbs_modify_qp} reads {@code IB_QP_STATE} and the access flags only: a P_Key index past the table siw
     * does not have and an {@code IB_QP_CUR_STATE} that is not the QP's state are taken (rxe's
     * {@code rxe_qp_chk_attr} would refuse both), on an IDLE QP and on a connected one, which goes on carrying data. A
     * port {@code rdma_is_port_valid} refuses is still EINVAL, from {@code modify_qp} in {@code uverbs_cmd.c}, which
     * every device gets.
     */
    @Test
    void onlyTheCoresModifyChecksApply() {
        QueuePair q = fresh();
        q.modify(QpAttr.builder().state(QpState.RTR).curState(QpState.RTS).pkeyIndex(40).build());
        assertEquals(QpState.INIT, q.query().qpState());
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> q.modify(QpAttr.builder().state(QpState.ERR).port(2).build()));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("port 2"), e.getMessage());
        assertEquals(QpState.INIT, q.query().qpState(), "refused before siw saw it");

        QueuePair[] p = h.pair();
        p[0].modify(QpAttr.builder().state(QpState.RTS).curState(QpState.INIT).pkeyIndex(40).build());
        assertEquals(QpState.RTS, p[0].query().qpState());
        sendCrosses(p, 16);
    }

    /** A SEND of 100000 bytes from a's QP to b's, every byte checked. */
    private void sendCrosses(QueuePair[] p, long seed) {
        byte[] data = SiwHosts.random(100_000, seed);
        h.a.write(0, data);
        p[1].postRecv(List.of(RecvWr.of(1, h.b.sge(0, data.length))));
        p[0].postSend(new SendWr.Send(2, List.of(h.a.sge(0, data.length)), SIGNALED, null));
        WorkCompletion sent = SiwHosts.one(h.a.cq);
        assertEquals(WcStatus.SUCCESS, sent.status(), sent.toString());
        WorkCompletion got = SiwHosts.one(h.b.cq);
        assertEquals(WcStatus.SUCCESS, got.status(), got.toString());
        assertEquals(WcOpcode.RECV, got.opcode());
        assertEquals(data.length, got.byteLen());
        assertArrayEquals(data, h.b.read(0, data.length));
    }
}
