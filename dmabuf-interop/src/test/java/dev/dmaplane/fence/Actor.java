package dev.dmaplane.fence;

import dev.dmaplane.testing.Eventually;

import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

/**
 * One test thread that runs tasks in order, so that an acquire context (which belongs to one thread) can be
 * driven step by step from a test. Every wait is bounded; {@link #close()} stops the thread.
 */
final class Actor implements AutoCloseable {
    static final long TIMEOUT_SECONDS = 10;

    private final AtomicReference<Thread> thread = new AtomicReference<>();
    private final ExecutorService executor;

    Actor(String name) {
        executor = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, name);
            t.setDaemon(true);
            thread.set(t);
            return t;
        });
    }

    <T> Future<T> submit(Callable<T> task) {
        return executor.submit(task);
    }

    Future<Void> submit(ThrowingRunnable task) {
        return executor.submit(() -> {
            task.run();
            return null;
        });
    }

    /** Runs {@code task} on this actor's thread and returns its result; its exception is rethrown as is. */
    <T> T call(Callable<T> task) throws Exception {
        return get(submit(task));
    }

    void run(ThrowingRunnable task) throws Exception {
        get(submit(task));
    }

    static <T> T get(Future<T> f) throws Exception {
        try {
            return f.get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof Exception ex) {
                throw ex;
            }
            throw e;
        }
    }

    /**
     * Waits (bounded, without sleeping) until this actor's thread is parked on the ww_mutex named {@code name},
     * that is, queued on its wait list.
     */
    void awaitBlockedOn(String name) {
        String blocker = "ww_mutex '" + name + "'";
        Eventually.eventually(() -> {
            Thread t = thread.get();
            Object b = t == null ? null : LockSupport.getBlocker(t);
            return b != null && blocker.equals(b.toString());
        }, Duration.ofSeconds(TIMEOUT_SECONDS), "actor thread never blocked on " + blocker);
    }

    @Override
    public void close() throws InterruptedException {
        executor.shutdownNow();
        if (!executor.awaitTermination(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
            throw new AssertionError("actor thread " + thread.get() + " did not stop");
        }
    }

    @FunctionalInterface
    interface ThrowingRunnable {
        void run() throws Exception;
    }
}
