package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.resource.UContext;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * The post verbs of a {@link QpImpl} ({@code rxe_post_send} and {@code rxe_post_recv} of {@code rxe_verbs.c}, with
 * {@code post_one_send}, {@code init_send_wqe} and {@code post_one_recv}): each request checked in the QP's state
 * ({@link SendWrChecks} is {@code validate_send_wr}), captured and queued under the QP's lock, then the provider rung.
 * Like {@code rxe_verbs.c}'s functions, which take the {@code struct rxe_qp} they post to, these take the QP and hold
 * its lock: the lock, the state and the queues stay the QP's, and a post costs no object and no call more than it
 * did as methods of the QP.
 */
final class QpPost {
    private QpPost() {
    }

    /** {@code ibv_post_send}: the requests in order up to the first refused, which the {@link PostException} names. */
    static void send(QpImpl qp, List<? extends SendWr> wrs, boolean internal) {
        DeviceImpl dev = qp.dev;
        PostException failure = null;
        boolean doorbell;
        int posted = 0;
        try (UContext.Call c = qp.ctx.enter()) {
            if (qp.isDestroyed()) {
                throw new ErrnoException(Errno.EINVAL, "qp " + qp.qpn + " was destroyed");
            }
            qp.lock.lock();
            try {
                for (SendWr wr : wrs) {
                    try {
                        enqueueLocked(qp, wr, internal);
                        posted++;
                    } catch (ErrnoException e) {
                        failure = new PostException(e.errno(), wr, posted, reason(e));
                        break;
                    }
                }
                if (posted > 0 && (qp.state == QpState.ERR || qp.state == QpState.SQE)) {
                    // what was taken completes flushed; a refused post flushes nothing (siw refuses every post in its
                    // TERMINATE, SQE to a query, and leaves the send queue as it was)
                    qp.queues.flushSend();
                }
                doorbell = posted > 0 && qp.state == QpState.RTS;
            } finally {
                qp.lock.unlock();
            }
            if (posted > 0 && dev.core.tracer.tracesPosts()) {
                traceSends(qp, wrs, posted);
            }
            if (doorbell) {
                dev.provider.postSend(qp);
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /** The first {@code posted} send work requests of a list, to the trace ({@code rvt_post_one_wr}). */
    private static void traceSends(QpImpl qp, List<? extends SendWr> wrs, int posted) {
        DeviceImpl dev = qp.dev;
        for (int i = 0; i < posted; i++) {
            SendWr wr = wrs.get(i);
            dev.core.tracer.posted(dev.name(), qp.qpn, true, wr.opcode().name(), wr.wrId(), wr.totalLength(),
                    wr.sgList().size(), wr.sendFlags());
        }
    }

    /** The first {@code posted} receive work requests of a list, to the trace. */
    private static void traceRecvs(QpImpl qp, List<RecvWr> wrs, int posted) {
        DeviceImpl dev = qp.dev;
        for (int i = 0; i < posted; i++) {
            RecvWr wr = wrs.get(i);
            dev.core.tracer.posted(dev.name(), qp.qpn, false, "RECV", wr.wrId(), wr.totalLength(), wr.sgList().size(),
                    0);
        }
    }

    /** {@code validate_send_wr} and {@code init_send_wqe}: checks, captures, queues. */
    private static void enqueueLocked(QpImpl qp, SendWr wr, boolean internal) {
        DeviceImpl dev = qp.dev;
        if (wr == null) {
            throw new ErrnoException(Errno.EINVAL, "null work request");
        }
        if (qp.state != QpState.RTS) {
            dev.qpStates().checkPostSend(qp, qp.state); // rxe_post_send's rule, or the provider's machine's
        }
        long length = SendWrChecks.check(wr, qp.type, qp.queueCap, dev.name(), dev.attr);
        dev.provider.checkSend(qp, wr);
        AhImpl ah = qp.type == QpType.UD ? SendWrChecks.udAh(qp.ctx, wr) : null;
        int mwRkey = 0;
        int mrLkey = 0;
        if (wr instanceof SendWr.BindMw b) {
            mwRkey = SendWrChecks.bindWindow(qp.ctx, b, internal).rkey();
            mrLkey = b.bindInfo().mr() == null ? 0 : b.bindInfo().mr().lkey();
        }
        if (qp.queues.sendFull()) {
            throw new ErrnoException(Errno.ENOMEM, "send queue of qp " + qp.qpn + " is full ("
                    + qp.queueCap.maxSendWr() + " work requests)");
        }
        MemorySegment data = (wr.sendFlags() & SendFlags.INLINE) != 0 ? copyInline(qp, wr.sgList(), length) : null;
        boolean signaled = qp.sqSigAll || (wr.sendFlags() & SendFlags.SIGNALED) != 0;
        qp.queues.addSend(wr, signaled, data, ah, mwRkey, mrLkey);
    }

    /** Inline data is copied from the caller's memory now; its keys are not looked at. */
    private static MemorySegment copyInline(QpImpl qp, List<Sge> sges, long length) {
        MemorySegment data = MemorySegment.ofArray(new byte[(int) length]);
        long pos = 0;
        for (Sge s : sges) {
            if (s.length() > 0) {
                qp.ctx.mm.read(s.addr(), data.asSlice(pos, s.length()));
                pos += s.length();
            }
        }
        return data.asReadOnly();
    }

    /** {@code ibv_post_recv}: the requests in order up to the first refused, which the {@link PostException} names. */
    static void recv(QpImpl qp, List<RecvWr> wrs) {
        DeviceImpl dev = qp.dev;
        int qpn = qp.qpn;
        PostException failure = null;
        int posted = 0;
        try (UContext.Call c = qp.ctx.enter()) {
            if (qp.isDestroyed()) {
                throw new ErrnoException(Errno.EINVAL, "qp " + qpn + " was destroyed");
            }
            qp.lock.lock();
            try {
                for (RecvWr wr : wrs) {
                    String why = null;
                    Errno errno = Errno.EINVAL;
                    ErrnoException refused;
                    if (wr == null) {
                        why = "null work request";
                    } else if ((refused = recvRefusal(qp)) != null) {
                        errno = refused.errno();
                        why = reason(refused);
                    } else if (qp.srq != null) {
                        why = "qp " + qpn + " receives from an SRQ";
                    } else if (wr.sgList().size() > qp.queueCap.maxRecvSge()) {
                        why = wr.sgList().size() + " SGEs exceed max_recv_sge " + qp.queueCap.maxRecvSge();
                    } else if (qp.queues.recvQueued() >= qp.queueCap.maxRecvWr()) {
                        errno = dev.provider.recvQueueFullErrno(qp);
                        why = qp.queueCap.maxRecvWr() == 0 ? "qp " + qpn + " has no receive queue (max_recv_wr 0)"
                                : "receive queue of qp " + qpn + " is full (" + qp.queueCap.maxRecvWr()
                                + " work requests)";
                    }
                    if (why != null) {
                        failure = new PostException(errno, wr, posted, why);
                        break;
                    }
                    qp.queues.addRecv(wr);
                    posted++;
                }
                if (qp.state == QpState.ERR) {
                    qp.queues.flushRecv();
                }
            } finally {
                qp.lock.unlock();
            }
            if (posted > 0 && dev.core.tracer.tracesPosts()) {
                traceRecvs(qp, wrs, posted);
            }
            if (posted > 0) {
                dev.provider.postRecv(qp);
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /**
     * What {@code e} says after its errno: a {@link PostException} names the errno once, in front of {@code bad_wr},
     * as {@code ibv_post_send} returns one errno with the failing request.
     */
    private static String reason(ErrnoException e) {
        String m = e.getMessage();
        String prefix = e.errno().name() + ": ";
        return m != null && m.startsWith(prefix) ? m.substring(prefix.length()) : m;
    }

    /** Why the QP's state machine refuses a receive in the current state ({@code post_recv}), or null. */
    private static ErrnoException recvRefusal(QpImpl qp) {
        if (qp.state == QpState.RTS) {
            return null;
        }
        try {
            qp.dev.qpStates().checkPostRecv(qp, qp.state);
            return null;
        } catch (ErrnoException e) {
            return e;
        }
    }
}
