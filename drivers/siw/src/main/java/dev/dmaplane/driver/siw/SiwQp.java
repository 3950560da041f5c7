package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.RecvResult;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;

/**
 * The driver's side of one QP ({@code struct siw_qp}, {@code siw_qp.c}): its connection endpoint, the send
 * requests started and not yet completed (handed to the core in queue order), the outbound READs waiting for their
 * response (ORQ), the inbound READs to answer (IRQ), a TERMINATE to send, and the per-queue message sequence
 * numbers of both directions.
 */
final class SiwQp {
    private static final Logger LOG = LoggerFactory.getLogger(SiwQp.class);

    final HwQp hw;
    volatile Cep cep;
    volatile boolean destroyed;
    /** Whether the QP waits in the TX thread's run queue. */
    final AtomicBoolean queued = new AtomicBoolean();
    /** The transmit state of the QP's connection (a new one with each connection). */
    volatile TxCtx tx = new TxCtx();

    // the transmit engine's (the thread holding tx.inUse)
    /** Last MSN sent per untagged queue (RFC 5041: the first message of a queue has MSN 1). */
    final int[] txMsn = new int[3];
    /** A started request waiting for its fence or for room in the ORQ. */
    SendWqe held;
    /** Whether the TERMINATE went out (nothing more is sent then). */
    boolean terminateSent;

    // guarded by this
    private final ArrayDeque<Pending> sq = new ArrayDeque<>();
    private final ArrayDeque<Pending> orq = new ArrayDeque<>();
    /**
     * What a connection left outstanding when the QP was taken off it ({@link #detach}): READs that waited in the ORQ
     * and the requests behind them, waiting for their turn to complete. A flush to ERR completes them in the core; a
     * QP back to IDLE completes them here ({@link #flushLeftOver}).
     */
    private final ArrayDeque<Pending> leftOver = new ArrayDeque<>();

    /** Inbound READs to answer, in arrival order. */
    final ConcurrentLinkedQueue<ReadResponse> irq = new ConcurrentLinkedQueue<>();
    /**
     * Inbound READs waiting in the IRQ: accepted by the receive path and not yet taken up by the TX thread, which
     * frees an entry as its response starts ({@code siw_activate_tx}: {@code irq_get++}); at most the connection's
     * IRD ({@link Rx}, {@code siw_init_rresp}).
     */
    final AtomicInteger inboundReads = new AtomicInteger();
    /** A TERMINATE the TX thread sends before it closes the stream. */
    volatile Terminate terminate;
    /**
     * siw's {@code term_info} set up by an error that leaves the QP on its connection (a SEND with Invalidate whose
     * STag cannot be invalidated): sent when the connection is dropped, in place of any set up later
     * ({@link #initTerminate}); null when none.
     */
    volatile Terminate termInfo;
    /**
     * The connection a modify to CLOSING or TERMINATE took the QP off, to be dropped once the QP is in its new state,
     * and whether the drop flushes the receive queue; null when none waits ({@link #leaveRts}). The modifying
     * thread's (the core serializes a QP's modifies).
     */
    private Drop drop;
    /**
     * The modify under way flushes the send queue with requests in it siw had not activated: SQ_DRAINED follows the
     * flush ({@link #flushingSq}, {@link #sqFlushed}). The modifying thread's.
     */
    private boolean drainedOnFlush;
    /**
     * siw's {@code qp->state_lock} as {@code siw_qp_modify} and {@code siw_qp_llp_close} take it for writing: a
     * modify ({@link #modifying}) and the loss of the connection ({@link #connectionGone}) run one after the other,
     * so a modify never finds the QP moved to ERR under it. Taken inside {@link #apartFromTx}, never around it.
     */
    private final ReentrantLock stateLock = new ReentrantLock();

    // the RX thread's
    /** Last MSN received per untagged queue. */
    final int[] rxMsn = new int[3];
    /**
     * The receive a SEND in progress is placed into ({@code rx_untagged.wqe_active}), and the bytes placed so far
     * ({@code wqe->processed}); the receive is taken off by whoever completes it ({@link #takeRecvInProgress}).
     */
    volatile RecvWqe recv;
    long recvBytes;

    /**
     * {@code qp->attrs.irq_size} and {@code orq_size}: the IRD and ORD of the connection that took the QP to RTS,
     * each rounded up to a power of two ({@code siw_qp_readq_init}); 0 until then, and kept after it ends.
     */
    volatile int irqSize;
    volatile int orqSize;

    SiwQp(HwQp hw) {
        this.hw = hw;
    }

    /**
     * A new connection starts from scratch: message sequence numbers from 1 again, nothing held, nothing to
     * terminate (no thread works on the QP while it has no connection).
     */
    void fresh() {
        tx = new TxCtx();
        Arrays.fill(txMsn, 0);
        Arrays.fill(rxMsn, 0);
        held = null;
        terminate = null;
        termInfo = null;
        terminateSent = false;
        inboundReads.set(0);
        recv = null;
        recvBytes = 0;
    }

    /**
     * {@code siw_init_terminate}: the TERMINATE to send for an error, {@code t}, unless one was set up already and
     * waits for the connection's drop ({@link #termInfo}), which then goes out instead (siw keeps the first).
     */
    Terminate initTerminate(Terminate t) {
        Terminate set = termInfo;
        return set != null ? set : t;
    }

    /** {@code siw_rqe_get}: {@code r} is the receive the SEND beginning now is placed into. */
    synchronized void startRecv(RecvWqe r) {
        recv = r;
        recvBytes = 0;
    }

    /** The receive in progress, taken off so that it completes once; null when none is. */
    synchronized RecvWqe takeRecvInProgress() {
        RecvWqe r = recv;
        recv = null;
        return r;
    }

    /**
     * {@code siw_rq_flush}'s first step: the receive a SEND was being placed into completes with WR_FLUSH_ERR and
     * {@code wqe->bytes}, which {@code siw_rqe_get} set to the length of the receive's SGL; the bytes placed are not
     * reported. The queued receives are the core's to flush.
     */
    void flushRecvInProgress() {
        RecvWqe r = takeRecvInProgress();
        if (r != null && !destroyed) {
            hw.completeRecv(r, new RecvResult(WcStatus.WR_FLUSH_ERR, WcOpcode.RECV, r.length(), 0, 0, 0, 0, 0, true));
        }
    }

    /** The sink of the oldest READ waiting for its response ({@code orq_get_current}), or null when none waits. */
    synchronized Sge readSink() {
        Pending p = orq.peekFirst();
        return p == null ? null : p.wqe.wr().sgList().getFirst();
    }

    /** {@code siw_qp_readq_init}: the read queues of a connection with IRD {@code ird} and ORD {@code ord}. */
    void readqInit(int ird, int ord) {
        irqSize = roundUpPowerOfTwo(ird);
        orqSize = roundUpPowerOfTwo(ord);
    }

    /**
     * {@code siw_query_qp}: the QP's state (siw's, as an IB state), its queue capabilities with {@code maxInline}
     * ({@code SIW_MAX_INLINE}) inline bytes, the netdev's path MTU {@code mtu}, the read queue depths as siw names
     * them (the IRD as {@code max_rd_atomic}, the ORD as {@code max_dest_rd_atomic}) and the fixed access flags
     * LOCAL_WRITE, REMOTE_WRITE and REMOTE_READ whatever a modify gave; siw reports nothing else (no P_Key index,
     * port, PSNs, path or timers), so those are 0 and absent from the mask. {@code held} is what the core holds.
     */
    QpAttr query(QpAttr held, int maxInline, Mtu mtu) {
        QpCap c = held.cap();
        return QpAttr.builder().state(held.qpState()).curState(held.curQpState())
                .cap(new QpCap(c.maxSendWr(), c.maxRecvWr(), c.maxSendSge(), c.maxRecvSge(), maxInline))
                .pathMtu(mtu).maxRdAtomic(irqSize).maxDestRdAtomic(orqSize)
                .accessFlags(Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ).build();
    }

    /**
     * {@code roundup_pow_of_two}, with 0 left 0 as {@code siw_qp_readq_init} and {@code siw_create_qp} leave an empty
     * queue.
     */
    static int roundUpPowerOfTwo(int n) {
        return n <= 1 ? n : Integer.highestOneBit(n - 1) << 1;
    }

    /** Records {@code w} as started; its completion waits for the requests before it. */
    synchronized Pending started(SendWqe w) {
        Pending p = new Pending(w);
        sq.addLast(p);
        return p;
    }

    synchronized void readSent(Pending p) {
        orq.addLast(p);
    }

    synchronized int readsInFlight() {
        return orq.size();
    }

    /** The oldest outstanding READ got its last response segment or failed. */
    synchronized boolean readDone(WcStatus status) {
        Pending p = orq.pollFirst();
        if (p == null) {
            return false;
        }
        complete(p, status);
        return true;
    }

    /** {@code p} ended with {@code status}: completes it and every ended request behind it, in queue order. */
    synchronized void complete(Pending p, WcStatus status) {
        p.status = status;
        while (!sq.isEmpty() && sq.peekFirst().status != null) {
            Pending h = sq.pollFirst();
            try {
                hw.completeSend(h.wqe, h.status);
            } catch (ErrnoException e) {
                // the QP was reset under the request: the core discarded it, nothing is left to complete
                LOG.warn("siw: qp {} completion of {} refused: {}", hw.qpNum(), h.wqe.wrId(), e.getMessage(), e);
            }
        }
    }

    /**
     * Forgets connection {@code c} and what was outstanding on it (the core flushes it), if the QP is still on it.
     *
     * @return whether it was
     */
    synchronized boolean detach(Cep c) {
        if (cep != c) {
            return false;
        }
        cep = null;
        leftOver.addAll(sq);
        sq.clear();
        orq.clear();
        irq.clear();
        inboundReads.set(0);
        return true;
    }

    /**
     * {@code siw_qp_nextstate_from_close} to IDLE: the READs a CLOSING left in the ORQ can get no response any more.
     * Linux forgets them ({@code siw_qp_readq_init} allocates a new ORQ over the old one on the next connection, and
     * nothing completes them); here they complete with WR_FLUSH_ERR, and the requests behind them with the status
     * they ended with, in queue order, so that the next connection's requests complete behind them.
     */
    synchronized void flushLeftOver() {
        for (Pending p = leftOver.pollFirst(); p != null; p = leftOver.pollFirst()) {
            WcStatus s = p.status == null ? WcStatus.WR_FLUSH_ERR : p.status;
            try {
                hw.completeSend(p.wqe, s);
            } catch (ErrnoException e) {
                LOG.warn("siw: qp {} flush of {} refused: {}", hw.qpNum(), p.wqe.wrId(), e.getMessage(), e);
            }
        }
    }

    /**
     * Runs {@code change} while no thread runs the transmit engine, as {@code siw_qp_modify} to ERROR takes
     * {@code qp->state_lock} for writing where {@code siw_qp_sq_process} holds it for reading: a SEND or WRITE whose
     * last byte TCP took completes (SUCCESS, its pass settles it) before a flush can overtake it. An engine pass
     * never blocks (the stream is non-blocking) and never waits for the receive path, so the wait is short. Not for
     * the engine's own thread.
     */
    void apartFromTx(Runnable change) {
        apartFromTx(() -> {
            change.run();
            return null;
        });
    }

    /** {@link #apartFromTx(Runnable)} for a change with a result. */
    <T> T apartFromTx(Supplier<T> change) {
        TxCtx x = tx;
        while (!x.inUse.compareAndSet(false, true)) {
            Thread.onSpinWait();
        }
        try {
            return change.get();
        } finally {
            x.inUse.set(false);
        }
    }

    /**
     * A modify of the QP ({@code siw_verbs_modify_qp}): apart from TX ({@link #apartFromTx}) and from the loss of the
     * connection ({@link #stateLock}), as siw holds {@code qp->state_lock} for writing over {@code siw_qp_modify}.
     */
    <T> T modifying(Supplier<T> change) {
        return apartFromTx(() -> {
            stateLock.lock();
            try {
                return change.get();
            } finally {
                stateLock.unlock();
            }
        });
    }

    /**
     * Whether the transmit side holds a work request, siw's {@code tx_wqe(qp)->wr_status != SIW_WR_IDLE}: a message
     * being cut into segments or not yet all taken by TCP, a request held back for its fence or a full ORQ, or one
     * posted and not yet started (siw's poster activates it at once). READs waiting in the ORQ for their response
     * leave it idle. Apart from TX.
     */
    boolean txBusy() {
        return txHolds() || hw.sendOutstanding() > hw.sendInFlight();
    }

    /** Whether the transmit engine has a request in hand: a message in progress or not all taken, or one held back. */
    private boolean txHolds() {
        TxCtx x = tx;
        return x.msg != null || x.head < x.pos || held != null;
    }

    /**
     * How many requests siw's send queue ring ({@code qp->sendq}) would hold: those posted and not started, but the
     * one siw would have activated already as {@code tx_wqe} when the engine has none in hand ({@code siw_post_send}
     * activates a request at once on an idle transmit side, {@code siw_qp_sq_process} the next one as soon as one is
     * done).
     */
    private int sendqDepth() {
        int unstarted = hw.sendOutstanding() - hw.sendInFlight();
        return txHolds() ? unstarted : Math.max(0, unstarted - 1);
    }

    /**
     * A modify moves the QP from {@code from} to ERROR: whether it flushes the send queue as {@code siw_qp_modify}
     * does ({@code siw_sq_flush}: always from RTS, from CLOSING and TERMINATE only with the transmit side busy,
     * never from IDLE) and finds requests in the ring, for which {@code siw_sq_flush} raises SQ_DRAINED once they
     * are flushed ({@link #sqFlushed}). Apart from TX.
     */
    void flushingSq(QpState from) {
        boolean flushes = switch (from) {
            case RTS -> true;
            case SQD, SQE -> txBusy();
            default -> false;
        };
        drainedOnFlush = flushes && sendqDepth() > 0;
    }

    /**
     * After the modify: SQ_DRAINED when it flushed requests siw's ring held ({@code siw_sq_flush} calls
     * {@code siw_qp_event(qp, IB_EVENT_SQ_DRAINED)}, which a QP being destroyed never raises).
     */
    void sqFlushed() {
        if (drainedOnFlush) {
            drainedOnFlush = false;
            if (!destroyed && hw.state() == QpState.ERR) {
                hw.raiseEvent(EventType.SQ_DRAINED);
            }
        }
    }

    /**
     * {@code siw_qp_nextstate_from_rts} to CLOSING or TERMINATE: the QP leaves its connection, which no longer
     * reports the peer's end ({@code rx_suspend}, {@code siw_socket_disassoc}) and which {@link #dropConnection}
     * drops once the QP is in its new state ({@code siw_qp_cm_drop}). Towards TERMINATE the
     * TERMINATE of {@code siw_init_terminate(qp, TERM_ERROR_LAYER_RDMAP, RDMAP_ETYPE_CATASTROPHIC,
     * RDMAP_ECODE_UNSPECIFIED, 1)} goes out on the stream; towards CLOSING the drop flushes the receive queue
     * ({@code siw_rq_flush}) and nothing else: READs waiting for their response stay outstanding. Apart from TX.
     */
    void leaveRts(Cep c, boolean terminating) {
        if (!detach(c)) {
            return;
        }
        c.disassociate();
        drop = new Drop(c, !terminating);
        if (terminating) {
            sendTerminate(c, initTerminate(new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_LOCAL_CATASTROPHIC,
                    Terminate.RDMAP_UNSPECIFIED)));
        } else {
            sendTermInfo(c);
        }
    }

    /**
     * {@code siw_qp_cm_drop(qp, 0)} as a modify to CLOSING or ERROR calls it: {@code siw_send_terminate} sends the
     * TERMINATE set up while the QP stayed on its connection ({@link #termInfo}), if any. Apart from TX.
     */
    void sendTermInfo(Cep c) {
        Terminate t = termInfo;
        if (t != null) {
            sendTerminate(c, t);
        }
    }

    /**
     * {@code siw_send_terminate} as {@code siw_qp_cm_drop} calls it: best effort, written at once without waiting
     * ({@code MSG_DONTWAIT}), and not at all while a request is in progress on the stream (a message partly cut or not
     * yet all taken by TCP), which a TERMINATE must not cut into. Apart from TX.
     */
    private void sendTerminate(Cep c, Terminate t) {
        TxCtx x = tx;
        if (x.msg != null || x.head < x.pos) {
            LOG.debug("siw: qp {} cannot send {}: a request is in progress", hw.qpNum(), t);
            return;
        }
        terminateSent = true;
        byte[] f = t.fpdu();
        ByteBuffer b = ByteBuffer.wrap(f);
        try {
            int n = c.ch.write(b);
            c.dev.captureData(c, b, 0, n);
            if (n == f.length) {
                c.dev.terminateSent(t);
            } else {
                LOG.debug("siw: qp {} sent {} bytes of its {}", hw.qpNum(), n, t);
            }
        } catch (IOException e) {
            LOG.debug("siw: qp {} could not send {}", hw.qpNum(), t, e);
        }
    }

    /**
     * {@code siw_qp_nextstate_from_rts} to CLOSING on a QP in RTS whose connection is gone already (a transmit-side
     * error dropped it, {@code siw_qp_cm_drop(qp, 0)}, leaving the QP in RTS): {@code siw_rq_flush} flushes the queued
     * receives all the same, once the QP is in CLOSING ({@link #dropConnection}); there is no connection to drop.
     */
    void closeWithoutConnection() {
        drop = new Drop(null, true);
    }

    /**
     * The second half of {@link #leaveRts}, once the QP is in CLOSING or TERMINATE ({@code siw_qp_cm_drop}): CLOSE to
     * the consumer, the stream closed, the connection's receive thread ended; then, for CLOSING, the receive in
     * progress ({@link #flushRecvInProgress}) and the queued receives complete with WR_FLUSH_ERR
     * ({@code siw_rq_flush}; an SRQ keeps its own), with or without a connection ({@link #closeWithoutConnection}).
     */
    void dropConnection() {
        Drop d = drop;
        drop = null;
        if (d == null) {
            return;
        }
        if (d.cep() != null) {
            d.cep().lost("qp " + hw.qpNum() + " moved to " + hw.state(), false);
            d.cep().join();
        }
        if (!d.flushRecv() || destroyed) {
            return;
        }
        flushRecvInProgress();
        if (hw.hwSrq().isEmpty()) {
            for (RecvWqe w = hw.takeRecv(); w != null; w = hw.takeRecv()) {
                hw.completeRecv(w, RecvResult.error(WcStatus.WR_FLUSH_ERR));
            }
        }
    }

    /** A connection to drop after a modify (null: none left), and whether the drop flushes the receive queue. */
    private record Drop(Cep cep, boolean flushRecv) {
    }

    /**
     * Connection {@code c} went away under the QP ({@code siw_qp_llp_close}): it goes to ERR, flushing what is
     * outstanding (the receive in progress first, {@link #flushRecvInProgress}), apart from any modify; SQ_DRAINED
     * follows when the flush found requests in siw's ring ({@code siw_sq_flush}).
     */
    void connectionGone(Cep c) {
        stateLock.lock();
        try {
            if (detach(c)) {
                Runnable hook = c.dev.afterDetach;
                if (hook != null) {
                    hook.run();
                }
                llpClose();
            }
        } finally {
            stateLock.unlock();
        }
    }

    /**
     * The receive path found an error and drops the connection ({@code siw_qp_cm_drop(qp, 1)}): the QP goes to ERR as
     * the connection's release moves it ({@code siw_qp_llp_close}: the receive in progress and the queues flushed,
     * SQ_DRAINED when the flush found requests in siw's ring), while the connection stays for the TX thread to send
     * the TERMINATE on. Apart from TX and from any modify.
     */
    void rxFailed() {
        stateLock.lock();
        try {
            llpClose();
        } finally {
            stateLock.unlock();
        }
    }

    /** {@code siw_qp_llp_close}'s move to ERR and its flush, unless the QP is there already or being destroyed. */
    private void llpClose() {
        if (!destroyed && hw.state() != QpState.ERR && hw.state() != QpState.RESET) {
            flushRecvInProgress();
            boolean drained = sendqDepth() > 0;
            hw.enterError();
            if (drained) {
                hw.raiseEvent(EventType.SQ_DRAINED);
            }
        }
    }
}
