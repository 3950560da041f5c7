package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

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

    /** Inbound READs to answer, in arrival order. */
    final ConcurrentLinkedQueue<ReadResponse> irq = new ConcurrentLinkedQueue<>();
    /**
     * Inbound READs outstanding: accepted by the receive path and not yet answered in full by the TX thread; at most
     * the connection's IRD ({@link Rx}).
     */
    final AtomicInteger inboundReads = new AtomicInteger();
    /** A TERMINATE the TX thread sends before it closes the stream. */
    volatile Terminate terminate;

    // the RX thread's
    /** Last MSN received per untagged queue. */
    final int[] rxMsn = new int[3];
    /** The receive a SEND in progress is placed into, and the bytes placed so far. */
    RecvWqe recv;
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
        terminateSent = false;
        inboundReads.set(0);
        recv = null;
        recvBytes = 0;
    }

    /** {@code siw_qp_readq_init}: the read queues of a connection with IRD {@code ird} and ORD {@code ord}. */
    void readqInit(int ird, int ord) {
        irqSize = roundUpPowerOfTwo(ird);
        orqSize = roundUpPowerOfTwo(ord);
    }

    /** {@code roundup_pow_of_two}, with 0 left 0 as {@code siw_qp_readq_init} leaves an empty queue. */
    private static int roundUpPowerOfTwo(int n) {
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
        sq.clear();
        orq.clear();
        irq.clear();
        inboundReads.set(0);
        return true;
    }

    /**
     * Runs {@code change} while no thread runs the transmit engine, as {@code siw_qp_modify} to ERROR takes
     * {@code qp->state_lock} for writing where {@code siw_qp_sq_process} holds it for reading: a SEND or WRITE whose
     * last byte TCP took completes (SUCCESS, its pass settles it) before a flush can overtake it. An engine pass
     * never blocks (the stream is non-blocking) and never waits for the receive path, so the wait is short. Not for
     * the engine's own thread.
     */
    void apartFromTx(Runnable change) {
        TxCtx x = tx;
        while (!x.inUse.compareAndSet(false, true)) {
            Thread.onSpinWait();
        }
        try {
            change.run();
        } finally {
            x.inUse.set(false);
        }
    }

    /** Connection {@code c} went away under the QP: it goes to ERR, flushing what is outstanding. */
    void connectionGone(Cep c) {
        if (detach(c) && !destroyed && hw.state() != QpState.ERR && hw.state() != QpState.RESET) {
            hw.enterError();
        }
    }
}
