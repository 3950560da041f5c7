package dev.dmaplane.irq;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.concurrent.atomic.AtomicLong;

/**
 * The per-vector thread that runs a threaded handler ({@code irq_thread} in {@code kernel/irq/manage.c}): wakes
 * coalesce as {@code IRQTF_RUNTHREAD} does, so wakes while the handler runs make it run once more.
 */
final class IrqThread {
    private static final Logger LOG = LoggerFactory.getLogger(IrqThread.class);

    private final int vector;
    private final IrqHandler handler;
    private final AtomicLong unhandled;
    private final Thread thread;
    private boolean wake;
    private boolean stop;

    IrqThread(String name, int vector, IrqHandler handler, AtomicLong unhandled) {
        this.vector = vector;
        this.handler = handler;
        this.unhandled = unhandled;
        this.thread = Thread.ofPlatform().name(name).daemon().unstarted(this::loop);
    }

    void start() {
        thread.start();
    }

    /** Asks the thread to run the handler ({@code __irq_wake_thread}). */
    synchronized void wake() {
        wake = true;
        notifyAll();
    }

    boolean isCurrent() {
        return Thread.currentThread() == thread;
    }

    /**
     * Stops the thread and waits for it to end, as {@code kthread_stop} does; a wake not yet handled is dropped.
     *
     * @throws ErrnoException {@code EINTR} if the caller is interrupted while waiting
     */
    void stop() {
        synchronized (this) {
            stop = true;
            notifyAll();
        }
        try {
            thread.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, thread.getName() + ": interrupted waiting for the irq thread to stop", e);
        }
    }

    private void loop() {
        while (true) {
            synchronized (this) {
                while (!wake && !stop) {
                    try {
                        wait();
                    } catch (InterruptedException e) {
                        LOG.error("{}: interrupted while idle; the irq thread ends", thread.getName(), e);
                        return;
                    }
                }
                if (stop) {
                    return;
                }
                wake = false;
            }
            run();
        }
    }

    private void run() {
        try {
            if (handler.handle(vector) == IrqReturn.NONE) {
                unhandled.incrementAndGet();
            }
        } catch (RuntimeException e) {
            LOG.error("{}: threaded handler failed; counted as unhandled", thread.getName(), e);
            unhandled.incrementAndGet();
        }
    }
}
