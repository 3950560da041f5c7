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
    /**
     * A retry is on its way and the response to its first PSN has not come ({@code comp.started_retry} of
     * {@code rxe_comp.c}): responses seen out of place meanwhile start no other.
     */
    boolean retryStarted;
    /** The first PSN the retry on its way sent again. */
    int retryPsn;
    /** A response showed a gap in this burst ({@link Completer#flushRetries} decides). */
    boolean gapSeen;
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
        retryStarted = false;
        resetResponder();
    }

    void resetResponder() {
        ackWaiting = false;
        recv = null;
        recvBuf = null;
        recvOff = 0;
        nakSent = false;
    }

    /** The responder acknowledged everything through {@code psn}: a retry from there or before was answered. */
    void answered(int psn) {
        if (retryStarted && Packet.psnDiff(psn, retryPsn) >= 0) {
            retryStarted = false;
        }
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
