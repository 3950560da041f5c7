package dev.dmaplane.gpudirect;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.time.Duration;

/**
 * rxe1 RDMA-writing the payload into a region round after round, on a thread of its own until closed: the traffic
 * under which objects move ({@code dma_buf_move_notify}, {@code ib_umem_dmabuf_map_pages}). A failed write ends the
 * thread and is kept for the caller.
 */
final class PayloadWriter implements AutoCloseable {
    private final Stage s;
    private final long iova;
    private final int rkey;
    private final Duration timeout;
    private final Thread thread;
    private boolean stop;
    private int rounds;
    private RuntimeException failure;

    /** Starts writing at {@code iova} with {@code rkey}; {@code timeout} bounds every wait of this writer. */
    PayloadWriter(Stage s, long iova, int rkey, Duration timeout, String name) {
        this.s = s;
        this.iova = iova;
        this.rkey = rkey;
        this.timeout = timeout;
        this.thread = Thread.ofPlatform().name(name).start(this::loop);
    }

    private void loop() {
        try {
            while (!stopped()) {
                s.far.write(s.src.addr(), s.src.mr().lkey(), iova, rkey, s.cfg.size(), s.cfg.message());
                synchronized (this) {
                    rounds++;
                    notifyAll();
                }
            }
        } catch (RuntimeException e) {
            synchronized (this) {
                failure = e;
                notifyAll();
            }
        }
    }

    private synchronized boolean stopped() {
        return stop;
    }

    /** Whole rounds written, every completion SUCCESS ({@link Hca#write} throws otherwise). */
    synchronized int rounds() {
        return rounds;
    }

    /** The write that ended the thread, or null. */
    synchronized RuntimeException failure() {
        return failure;
    }

    /** Waits (bounded by the timeout) until {@code n} rounds are done; false on timeout or failure. */
    synchronized boolean awaitRounds(int n) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (rounds < n && failure == null) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return false;
            }
            wait(left / 1_000_000 + 1);
        }
        return failure == null;
    }

    /**
     * Stops after the round in progress and joins the thread (bounded).
     *
     * @throws ErrnoException {@code ETIMEDOUT} when the thread does not end within the timeout
     */
    @Override
    public void close() throws InterruptedException {
        synchronized (this) {
            stop = true;
        }
        thread.join(timeout.toMillis());
        ErrnoException.check(!thread.isAlive(), Errno.ETIMEDOUT, "gpudirect: " + thread.getName()
                + " did not stop within " + timeout.toSeconds() + " s");
    }
}
