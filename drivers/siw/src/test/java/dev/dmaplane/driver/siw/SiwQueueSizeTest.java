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
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.INLINE;
import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The queues {@code siw_create_qp} ({@code drivers/infiniband/sw/siw/siw_verbs.c}) makes: the send and receive
 * rings rounded up to powers of two ({@code roundup_pow_of_two}), the SGE counts as asked, no inline limit but
 * {@code SIW_MAX_INLINE} (80 bytes, {@code siw_copy_inline_sgl}); {@code attrs->cap} is left as it was, so
 * {@code ibv_create_qp} reports the request while {@code siw_query_qp} reports the rings, and {@code siw_post_send}
 * and {@code siw_post_receive} take as many work requests as the rings hold.
 */
@Timeout(60)
class SiwQueueSizeTest {
    private final SiwHosts h = new SiwHosts(91, 92);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /**
     * A QP made with {@code max_recv_wr} 0 and no SRQ has a receive queue of no entry ({@code rq_size} 0), and
     * {@code siw_post_receive} refuses every receive to it with EINVAL, before it looks at the state: on the new
     * (IDLE) QP, connected (RTS) and in CLOSING (where a QP with a receive queue gets ENOTCONN). Nothing is queued: the
     * modify to ERR flushes nothing. A SEND still crosses the connection (bytes checked).
     */
    @Test
    void aQpWithoutAReceiveQueueRefusesReceivesWithEinval() {
        QueuePair q = h.a.rc(new QpCap(4, 0, 1, 1, 0));
        RecvWr r = RecvWr.of(1, h.a.sge(0, 64));
        PostException idle = assertThrows(PostException.class, () -> q.postRecv(List.of(r)));
        assertEquals(List.of(Errno.EINVAL, 0), List.of(idle.errno(), idle.badIndex()), idle.getMessage());

        QueuePair qb = h.b.rc();
        h.pair(q, qb);
        PostException rts = assertThrows(PostException.class, () -> q.postRecv(List.of(r)));
        assertEquals(Errno.EINVAL, rts.errno(), rts.getMessage());
        byte[] data = SiwHosts.random(256, 5);
        h.a.write(4096, data);
        qb.postRecv(List.of(RecvWr.of(2, h.b.sge(0, data.length))));
        q.postSend(new SendWr.Send(3, List.of(h.a.sge(4096, data.length)), SIGNALED, null));
        WorkCompletion sent = SiwHosts.one(h.a.cq);
        assertEquals(List.of(3L, WcStatus.SUCCESS), List.of(sent.wrId(), sent.status()));
        WorkCompletion got = SiwHosts.one(h.b.cq);
        assertEquals(List.of(2L, WcStatus.SUCCESS), List.of(got.wrId(), got.status()));
        assertArrayEquals(data, h.b.read(0, data.length));

        q.modify(QpAttr.builder().state(QpState.SQD).build());
        PostException closing = assertThrows(PostException.class, () -> q.postRecv(List.of(r)));
        assertEquals(Errno.EINVAL, closing.errno(), closing.getMessage());
        q.modify(QpAttr.builder().state(QpState.ERR).build());
        assertEquals(List.of(), h.a.cq.poll(4), "nothing was queued");
    }

    /**
     * {@code siw_create_qp} with 5 sends, 3 receives, 2 and 1 SGEs and no inline data: the create answers the request,
     * a query ({@code siw_query_qp}) the rings of 8 and 4 entries with {@code SIW_MAX_INLINE}; the receive ring takes 4
     * receives on the new (IDLE) QP and the fifth finds it full ({@code siw_post_receive}: ENOMEM).
     */
    @Test
    void theRingsAreRoundedUpToPowersOfTwoAndTheCreateReportsTheRequest() {
        QpCap asked = new QpCap(5, 3, 2, 1, 0);
        QueuePair q = h.a.rc(asked);
        assertEquals(asked, q.cap(), "siw_create_qp writes nothing back into attrs->cap");
        assertEquals(new QpCap(8, 4, 2, 1, 80), q.query().cap(), "sq_size, rq_size, the SGEs asked, SIW_MAX_INLINE");
        List<RecvWr> recvs = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            recvs.add(RecvWr.of(10 + i, h.a.sge(i * 64L, 64)));
        }
        PostException full = assertThrows(PostException.class, () -> q.postRecv(recvs));
        assertEquals(Errno.ENOMEM, full.errno(), full.getMessage());
        assertEquals(4, full.badIndex(), "four receives fit the ring of 4");
    }

    /**
     * {@code siw_post_send} on a connected QP created with 5 sends and no inline data: one post of 9 WRITEs queues 8,
     * the ring's size, and the ninth is ENOMEM; the 8 land (bytes checked). An inline WRITE of 80 bytes is taken
     * ({@code siw_copy_inline_sgl} bounds it by {@code SIW_MAX_INLINE} alone) and lands; one of 81 is EINVAL.
     */
    @Test
    void theSendRingTakesItsRoundedSizeAndSiwsInlineBytes() {
        QueuePair[] p = h.pair(h.a.rc(new QpCap(5, 4, 1, 1, 0)), h.b.rc());
        byte[] data = SiwHosts.random(9 * 64, 71);
        h.a.write(0, data);
        List<SendWr> writes = new ArrayList<>();
        for (int i = 0; i < 9; i++) {
            writes.add(new SendWr.RdmaWrite(20 + i, List.of(h.a.sge(i * 64L, 64)), SIGNALED, h.b.buf + i * 64L,
                    h.b.mr.rkey()));
        }
        PostException full = assertThrows(PostException.class, () -> p[0].postSend(writes));
        assertEquals(Errno.ENOMEM, full.errno(), full.getMessage());
        assertEquals(8, full.badIndex(), "eight WRITEs fit the ring of 8");
        List<WorkCompletion> wc = SiwHosts.poll(h.a.cq, 8);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        byte[] sent = Arrays.copyOf(data, 8 * 64);
        // a WRITE completes once TCP took it; the peer places it when its receive thread gets to it
        eventually(() -> Arrays.equals(sent, h.b.read(0, sent.length)), SiwHosts.WAIT, "the 8 WRITEs placed");
        assertArrayEquals(new byte[64], h.b.read(8 * 64, 64), "the ninth never posted");

        byte[] inline = SiwHosts.random(81, 72);
        h.a.write(4096, inline);
        p[0].postSend(new SendWr.RdmaWrite(30, List.of(h.a.sge(4096, 80)), SIGNALED | INLINE, h.b.buf + 4096,
                h.b.mr.rkey()));
        assertTrue(SiwHosts.one(h.a.cq).isSuccess());
        byte[] first80 = Arrays.copyOf(inline, 80);
        eventually(() -> Arrays.equals(first80, h.b.read(4096, 80)), SiwHosts.WAIT, "the inline WRITE placed");
        PostException tooLong = assertThrows(PostException.class, () -> p[0].postSend(new SendWr.RdmaWrite(31,
                List.of(h.a.sge(4096, 81)), SIGNALED | INLINE, h.b.buf + 4096, h.b.mr.rkey())));
        assertEquals(Errno.EINVAL, tooLong.errno(), tooLong.getMessage());
    }

    /**
     * The sizes {@code siw_create_qp} refuses keep its errno: no send queue, a queue beyond {@code SIW_MAX_QP_WR}
     * (32768), more SGEs than {@code SIW_MAX_SGE} (6) or inline data beyond {@code SIW_MAX_INLINE} are EINVAL; a QP
     * type other than RC is EOPNOTSUPP. Nothing is left made.
     */
    @Test
    void theSizesSiwRefusesKeepItsErrno() {
        for (QpCap bad : List.of(new QpCap(0, 4, 1, 1, 0), new QpCap(32769, 4, 1, 1, 0), new QpCap(4, 32769, 1, 1, 0),
                new QpCap(4, 4, 7, 1, 0), new QpCap(4, 4, 1, 7, 0), new QpCap(4, 4, 1, 1, 81))) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> h.a.pd.createQp(
                    new QpInitAttr(h.a.cq, h.a.cq, null, bad, QpType.RC, false)), bad.toString());
            assertEquals(Errno.EINVAL, e.errno(), e.getMessage());
        }
        ErrnoException ud = assertThrows(ErrnoException.class, () -> h.a.pd.createQp(
                new QpInitAttr(h.a.cq, h.a.cq, null, new QpCap(4, 4, 1, 1, 0), QpType.UD, false)));
        assertEquals(Errno.EOPNOTSUPP, ud.errno(), ud.getMessage());
        QpCap largest = new QpCap(32768, 32768, 6, 6, 80);
        assertEquals(largest, h.a.rc(largest).query().cap(), "SIW_MAX_QP_WR is a power of two already");
    }
}
