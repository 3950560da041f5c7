package dev.dmaplane.driver.siw;

import dev.dmaplane.driver.siw.TxEngine.Outcome;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.EventType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.channels.CancelledKeyException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.time.Duration;
import java.util.HashSet;
import java.util.Iterator;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The device's TX thread ({@code siw_qp_tx.c}: {@code siw_run_sq}) and how work reaches a QP's transmit engine
 * ({@link TxEngine}, {@code siw_qp_sq_process}): the poster runs the engine itself when the send queue was idle, as
 * {@code siw_post_send} does; otherwise, and for the work the receive path queues, the QP is queued for the thread
 * ({@code siw_sq_start}), which gives each QP its turn (a burst of requests, then the others'). The stream is
 * non-blocking: what TCP does not take stays in the connection's {@link TxCtx}, and the thread waits for write space
 * in its selector and resumes the engine from there ({@code sk_write_space}, {@code siw_qp_llp_write_space},
 * {@code siw_sq_resume}); it also ends a connection whose stream failed under the engine and drops the one whose
 * TERMINATE left.
 */
final class Tx {
    private static final Logger LOG = LoggerFactory.getLogger(Tx.class);
    private static final Duration JOIN = Duration.ofSeconds(10);
    private final SiwProvider dev;
    /** The transmit engine the poster and this thread run for a QP ({@code siw_qp_sq_process}). */
    private final TxEngine engine;
    private final ConcurrentLinkedQueue<SiwQp> runq = new ConcurrentLinkedQueue<>();
    private final SiwQp stop = new SiwQp(null);
    /** Whether the thread waits in its selector (a kick must wake it). */
    private volatile boolean idle;
    /** A stream was closed since the thread last let go of closed streams' registrations ({@link #release}). */
    private final AtomicBoolean closes = new AtomicBoolean();
    /** Runs on the thread before each QP's turn, or null: how a test keeps the thread busy, as other QPs would. */
    volatile Runnable beforeTurn;
    private Selector selector;
    /** QPs whose stream the thread waits to take more (its thread only). */
    private final Set<SiwQp> armed = new HashSet<>();
    private Thread thread;

    Tx(SiwProvider dev, int mss) {
        this.dev = dev;
        this.engine = new TxEngine(dev, mss);
    }

    /** Starts the thread; the device is registered (its memory access is there). */
    synchronized void start() {
        engine.start();
        try {
            selector = Selector.open();
        } catch (IOException e) {
            throw new ErrnoException(Errno.EMFILE, "siw: no selector for the TX thread of " + dev.name() + ": "
                    + e.getMessage(), e);
        }
        thread = Thread.ofPlatform().name("siw-tx-" + dev.name()).daemon().start(this::run);
    }

    /** Stops the thread after the work queued before; the connections are closed first. */
    synchronized void stop() {
        if (thread == null) {
            return;
        }
        runq.add(stop);
        selector.wakeup();
        try {
            if (!thread.join(JOIN)) {
                LOG.error("siw: the TX thread of {} did not end within {}", dev.name(), JOIN);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        thread = null;
    }

    /** Queues {@code q} for the thread ({@code siw_sq_start}). */
    void kick(SiwQp q) {
        if (q.queued.compareAndSet(false, true)) {
            runq.add(q);
            if (idle) {
                selector.wakeup();
            }
        }
    }

    /**
     * A stream was closed: the thread lets go of its registration before it serves the next QP or waits, so that the
     * socket is really closed (a registered channel's socket closes only once its key left every selector it was
     * registered with, at that selector's next selection), however busy the thread is.
     */
    void wake() {
        closes.set(true);
        Selector s = selector;
        if (s != null) {
            s.wakeup();
        }
    }

    /** The registrations the selector holds, cancelled ones not yet let go of included. */
    int registrations() {
        Selector s = selector;
        return s == null || !s.isOpen() ? 0 : s.keys().size();
    }

    /**
     * {@code siw_post_send}'s direct send: work was posted on {@code q}; the poster runs the engine itself when no
     * other thread does and the stream has room, and hands the QP to the TX thread when the stream is full, the
     * burst is used up or the stream failed. A QP that waits for write space is left to the TX thread, which
     * resumes it.
     */
    void post(SiwQp q, Cep c) {
        TxCtx x = q.tx;
        if (x.blocked) {
            return; // the engine resumes on write space and takes the new work then
        }
        Outcome o = engine.drive(q, c, x);
        if (o == Outcome.BLOCKED || o == Outcome.MORE || o == Outcome.FAILED || o == Outcome.DROP) {
            kick(q);
        }
    }

    private void run() {
        try {
            while (true) {
                release();
                SiwQp q = runq.poll();
                if (q == null) {
                    idle = true;
                    if (runq.isEmpty()) {
                        selector.select();
                    } else {
                        selector.selectNow();
                    }
                    idle = false;
                    writable();
                    continue;
                }
                if (q == stop) {
                    return;
                }
                q.queued.set(false);
                Runnable hook = beforeTurn;
                if (hook != null) {
                    hook.run();
                }
                serve(q);
                if (!armed.isEmpty()) {
                    selector.selectNow();
                    writable();
                }
            }
        } catch (IOException e) {
            LOG.error("siw: the TX thread of {} lost its selector", dev.name(), e);
        } finally {
            try {
                selector.close();
            } catch (IOException e) {
                LOG.error("siw: closing the TX selector of {} failed", dev.name(), e);
            }
        }
    }

    /**
     * Lets go of the registrations of the streams closed since the last time: a selection deregisters the cancelled
     * keys, so their sockets close now rather than when the thread next runs out of work; the write space it finds
     * resumes those QPs.
     */
    private void release() throws IOException {
        if (closes.get() && closes.compareAndSet(true, false)) {
            selector.selectNow();
            writable();
        }
    }

    /** The TX thread's turn for {@code q}: run the engine, then wait for write space or requeue as it ended. */
    private void serve(SiwQp q) {
        Cep c = q.cep;
        // a TERMINATE goes out even while the passive side waits for the RTR message (siw_send_terminate needs
        // only the socket)
        if (c == null || c.isGone() || (!c.isEstablished() && q.terminate == null) || q.destroyed) {
            return;
        }
        TxCtx x = q.tx;
        Outcome o = engine.drive(q, c, x);
        switch (o) {
            case MORE -> kick(q); // more may wait: let the other QPs have their turn first
            case BLOCKED -> arm(q, c, x);
            case FAILED -> fail(q, c, x);
            case DROP -> engine.drop(q, c, x);
            case IDLE, BUSY -> {
            }
        }
    }

    /** Waits for {@code q}'s stream to take more ({@code sk_write_space}). */
    private void arm(SiwQp q, Cep c, TxCtx x) {
        try {
            if (x.key == null) {
                x.key = c.ch.register(selector, SelectionKey.OP_WRITE, q);
            } else {
                x.key.interestOps(SelectionKey.OP_WRITE);
            }
            armed.add(q);
        } catch (IOException | CancelledKeyException e) {
            LOG.debug("siw: qp {} lost its stream while waiting for write space", q.hw.qpNum(), e);
            c.lost("send failed: " + e.getMessage(), q.terminate == null); // a pending TERMINATE: the QP's drop
        }
    }

    /** The streams that can take more: their engines resume ({@code siw_sq_resume}). */
    private void writable() {
        Set<SelectionKey> keys = selector.selectedKeys();
        for (Iterator<SelectionKey> it = keys.iterator(); it.hasNext(); ) {
            SelectionKey k = it.next();
            it.remove();
            SiwQp q = (SiwQp) k.attachment();
            armed.remove(q);
            if (k.isValid()) {
                k.interestOps(0);
                kick(q);
            }
        }
        armed.removeIf(q -> q.tx.key == null || !q.tx.key.isValid());
    }

    private void fail(SiwQp q, Cep c, TxCtx x) {
        Exception e = x.failure;
        x.failure = null;
        if (e instanceof IOException) {
            LOG.debug("siw: qp {} lost its stream while sending", q.hw.qpNum(), e);
            c.lost("send failed: " + e.getMessage(), q.terminate == null); // a pending TERMINATE: the QP's drop
        } else if (e != null) {
            LOG.error("siw: qp {} failed in its transmit engine", q.hw.qpNum(), e);
            q.hw.raiseEvent(EventType.QP_FATAL);
            c.lost("TX failure: " + e, false);
        }
    }


}
