package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.concurrent.Callable;

/**
 * The other end of a run (perftest's server side, or the second direction of {@code -b}) in a thread of its own:
 * started with its work, joined by the caller when its own side ended, and its result or failure handed back on
 * the caller's thread.
 */
final class OtherEnd<T> {
    private final Thread thread;
    private volatile T result;
    private volatile Throwable failure;

    private OtherEnd(String name, Callable<T> work, Runnable onFailure) {
        thread = Thread.ofPlatform().name(name).unstarted(() -> {
            try {
                result = work.call();
            } catch (Throwable e) {
                failure = e;
                onFailure.run();
            }
        });
    }

    /** Starts {@code work} in a thread named {@code name}; {@code onFailure} runs there if it fails (to stop the caller's side). */
    static <T> OtherEnd<T> start(String name, Callable<T> work, Runnable onFailure) {
        OtherEnd<T> end = new OtherEnd<>(name, work, onFailure);
        end.thread.start();
        return end;
    }

    /** Waits for the thread, at most as long as a run may stall. */
    void join() {
        try {
            thread.join(Perftest.STALL_NS / 1_000_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** What the work returned, after {@link #join}; its failure rethrown here (EIO around a checked one). */
    T result() {
        Throwable t = failure;
        if (t instanceof RuntimeException r) {
            throw r;
        }
        if (t != null) {
            throw new ErrnoException(Errno.EIO, "perftest: " + thread.getName() + " failed: " + t, t);
        }
        return result;
    }
}
