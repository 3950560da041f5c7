package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.RecvResult;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.rdma.verbs.WrOpcode;

import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;

/**
 * The work queues of a {@link QpImpl} (the send and receive rings of {@code rxe_qp}, {@code rxe_queue.c}): the send
 * ring in posting order with how many of its oldest entries the provider started, the receive queue and the receives
 * the provider took from it or from the SRQ, and the completions that leave them for the CQs. Guarded by the QP's
 * lock; a completion a CQ in error loses puts the QP in error ({@link QpImpl#lostCompletionLocked}).
 */
final class WorkQueues {
    private final QpImpl qp;
    private final int qpn;
    private final CqImpl scq;
    private final CqImpl rcq;
    private final SrqImpl srq;
    private final SendWqeImpl[] sq;
    private int sqHead;
    private int sqCount;
    private int sqStarted;
    private final ArrayDeque<RecvWqeImpl> rq = new ArrayDeque<>();
    private final List<RecvWqeImpl> recvTaken = new ArrayList<>();
    private long sendSeq;
    private long recvSeq;

    WorkQueues(QpImpl qp, int qpn, int maxSendWr, CqImpl scq, CqImpl rcq, SrqImpl srq) {
        this.qp = qp;
        this.qpn = qpn;
        this.scq = scq;
        this.rcq = rcq;
        this.srq = srq;
        this.sq = new SendWqeImpl[maxSendWr];
    }

    // the send queue

    /** Queues a checked send, with what was captured at post time; the caller saw room ({@link #sendFull}). */
    void addSend(SendWr wr, boolean signaled, MemorySegment inline, AhImpl ah, int mwRkey, int mrLkey) {
        sq[sqSlot(sqCount)] = new SendWqeImpl(sendSeq++, wr, signaled, inline, ah, mwRkey, mrLkey);
        sqCount++;
    }

    /** Whether the send queue has no room for another request. */
    boolean sendFull() {
        return sqCount >= sq.length;
    }

    /** The oldest send not started yet, now started, or null. */
    SendWqeImpl startNext() {
        if (sqStarted >= sqCount) {
            return null;
        }
        SendWqeImpl w = sq[sqSlot(sqStarted)];
        sqStarted++;
        w.started = true;
        return w;
    }

    /** Sends the provider started and did not complete. */
    int started() {
        return sqStarted;
    }

    /** Sends queued and not completed. */
    int outstanding() {
        return sqCount;
    }

    /** Whether sends wait that the provider did not start. */
    boolean hasUnstarted() {
        return sqCount > sqStarted;
    }

    /** The oldest outstanding send, or null. */
    SendWqeImpl oldest() {
        return sqCount == 0 ? null : sq[sqHead];
    }

    /** Completes the oldest send, started: it leaves the queue, with a completion if it failed or is signaled. */
    void retireOldest(WcStatus status) {
        SendWqeImpl w = popSend();
        sqStarted--;
        if (status != WcStatus.SUCCESS || w.signaled()) {
            pushSend(w, status);
        }
    }

    /** The send-queue ring's slot {@code i} entries after the head ({@code i <= sq.length}), without a division. */
    private int sqSlot(int i) {
        int j = sqHead + i;
        return j >= sq.length ? j - sq.length : j;
    }

    private SendWqeImpl popSend() {
        SendWqeImpl w = sq[sqHead];
        sq[sqHead] = null;
        sqHead = sqSlot(1);
        sqCount--;
        w.completed = true;
        return w;
    }

    private void pushSend(SendWqeImpl w, WcStatus status) {
        WrOpcode op = w.opcode();
        long len = op.isAtomic() ? 8 : w.length();
        WorkCompletion wc = new WorkCompletion(w.wrId(), status, op.completionOpcode(), 0, len, 0, 0, qpn, 0, 0, 0, 0, 0, 0);
        if (!scq.push(wc, false)) {
            qp.lostCompletionLocked();
        }
    }

    /** Every outstanding send completes with WR_FLUSH_ERR, signaled or not. */
    void flushSend() {
        while (sqCount > 0) {
            SendWqeImpl w = popSend();
            pushSend(w, WcStatus.WR_FLUSH_ERR);
        }
        sqStarted = 0;
    }

    // the receive queue

    /** Receives queued and not taken. */
    int recvQueued() {
        return rq.size();
    }

    /** Receives queued or taken, not completed. */
    int recvOutstanding() {
        return rq.size() + recvTaken.size();
    }

    /** Queues a checked receive. */
    void addRecv(RecvWr wr) {
        rq.add(new RecvWqeImpl(recvSeq++, wr, false));
    }

    /** The oldest receive of the QP's receive queue or SRQ, taken, or null. */
    RecvWqeImpl takeRecv() {
        RecvWqeImpl w = srq != null ? srq.take() : rq.poll();
        if (w != null) {
            recvTaken.add(w);
        }
        return w;
    }

    /** Completes a taken receive as {@code r} says; false if it was flushed meanwhile. */
    boolean completeRecv(RecvWqe wqe, RecvResult r) {
        if (!recvTaken.remove(wqe)) {
            if (wqe instanceof RecvWqeImpl) {
                return false; // flushed meanwhile
            }
            throw new ErrnoException(Errno.EINVAL, "not a receive WQE taken from qp " + qpn);
        }
        WorkCompletion wc = new WorkCompletion(wqe.wrId(), r.status(), r.opcode(), 0, r.byteLen(), r.immData(),
                r.invalidatedRkey(), qpn, r.srcQp(), r.wcFlags(), r.pkeyIndex(), 0, 0, 0);
        if (!rcq.push(wc, r.solicited())) {
            qp.lostCompletionLocked();
        }
        return true;
    }

    /** Receives in progress, then queued ones, complete with WR_FLUSH_ERR (an SRQ keeps what it holds). */
    void flushRecv() {
        List<RecvWqeImpl> all = new ArrayList<>(recvTaken);
        recvTaken.clear();
        all.addAll(rq);
        rq.clear();
        for (RecvWqeImpl w : all) {
            WorkCompletion wc = new WorkCompletion(w.wrId(), WcStatus.WR_FLUSH_ERR, WcOpcode.RECV,
                    0, 0, 0, 0, qpn, 0, 0, 0, 0, 0, 0);
            if (!rcq.push(wc, true)) {
                qp.lostCompletionLocked();
            }
        }
    }

    /** Empties both queues without completions (modify to RESET, destroy). */
    void discard() {
        while (sqCount > 0) {
            popSend();
        }
        sqStarted = 0;
        rq.clear();
        recvTaken.clear();
    }
}
