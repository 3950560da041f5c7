package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.WcStatus;

import java.util.ArrayDeque;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Driver-private state of one QP (what {@code struct rxe_qp} keeps in its req, resp and comp parts), shared by the
 * {@link Requester}, the {@link Responder} and the {@link Completer}; touched only by the thread running its
 * {@link Engine}, except {@link #queued}.
 */
final class QpCtx {
    final HwQp qp;
    final AtomicBoolean queued = new AtomicBoolean();
    // requester
    int npsn;
    final ArrayDeque<Msg> inflight = new ArrayDeque<>();
    int readsInFlight;
    SendWqe held;
    WcStatus heldStatus;
    int retryLeft;
    int rnrLeft;
    boolean rnrWait;
    long deadline;
    // responder
    int epsn;
    int msn;
    boolean nakSent;
    /** A coalesced ACK waiting for the end of the burst: its PSN and where it goes. */
    boolean ackWaiting;
    int ackPsn;
    Gid ackDgid;
    int ackDqpn;
    RecvWqe recv;
    byte[] recvBuf;
    long recvOff;
    long wva;
    int wrkey;
    long woff;
    /**
     * Results of the last atomics, by PSN, to answer duplicates: rxe's responder resources, a ring of
     * {@code max_dest_rd_atomic} entries recycled oldest first.
     */
    final Map<Integer, Long> atomicResults = new LinkedHashMap<>() {
        @Override
        protected boolean removeEldestEntry(Map.Entry<Integer, Long> e) {
            return size() > Math.max(1, qp.attr().maxDestRdAtomic());
        }
    };

    QpCtx(HwQp qp) {
        this.qp = qp;
    }

    void reset() {
        inflight.clear();
        readsInFlight = 0;
        held = null;
        heldStatus = null;
        rnrWait = false;
        resetResponder();
    }

    void resetResponder() {
        ackWaiting = false;
        recv = null;
        recvBuf = null;
        recvOff = 0;
        nakSent = false;
    }

    /** Forgets messages the core flushed (the QP went to ERR or RESET by modify). */
    void dropFlushed() {
        if (!inflight.isEmpty() && inflight.peekFirst().w.isCompleted()) {
            inflight.clear();
            readsInFlight = 0;
            rnrWait = false;
        }
        if (held != null && held.isCompleted()) {
            held = null;
            heldStatus = null;
        }
    }
}
