package dev.dmaplane.rdma.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link OrderedWorkqueue}: {@code alloc_ordered_workqueue}'s one named worker, and {@code destroy_workqueue}'s
 * promise that nothing of the queue is left once it returns, here the worker thread itself.
 */
@Timeout(60)
class OrderedWorkqueueTest {
    private static long alive(String name) {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals(name) && t.isAlive())
                .count();
    }

    /** After work ran, a shut-down queue's termination means its worker is gone, round after round. */
    @Test
    void theWorkerIsGoneWhenTerminationIsReported() throws Exception {
        for (int round = 0; round < 200; round++) {
            String name = "wq-test-" + round;
            OrderedWorkqueue wq = OrderedWorkqueue.alloc(name);
            CompletableFuture<String> ran = new CompletableFuture<>();
            wq.schedule(() -> ran.complete(Thread.currentThread().getName()), 1, TimeUnit.NANOSECONDS);
            assertEquals(name, ran.get(10, TimeUnit.SECONDS), "work runs on the named worker");
            wq.shutdownNow();
            assertTrue(wq.awaitTermination(10, TimeUnit.SECONDS));
            assertEquals(0, alive(name), "round " + round);
        }
    }

    /**
     * The worker knows itself; awaiting the queue's end from it answers at once (false: its own work still runs),
     * where waiting would last the whole timeout.
     */
    @Test
    void theWorkerKnowsItselfAndDoesNotWaitForItsOwnEnd() throws Exception {
        OrderedWorkqueue wq = OrderedWorkqueue.alloc("wq-self");
        assertFalse(wq.onWorker());
        CompletableFuture<Boolean> ended = new CompletableFuture<>();
        wq.execute(() -> {
            assertTrue(wq.onWorker());
            wq.shutdown();
            try {
                ended.complete(wq.awaitTermination(60, TimeUnit.SECONDS));
            } catch (InterruptedException e) {
                ended.completeExceptionally(e);
            }
        });
        assertFalse(ended.get(10, TimeUnit.SECONDS), "still running its last work: not terminated, and no wait");
        assertTrue(wq.awaitTermination(10, TimeUnit.SECONDS));
        assertEquals(0, alive("wq-self"));
    }

    /**
     * {@code destroy} as {@code destroy_workqueue} leaves a queue: delayed work not run yet is dropped, the worker has
     * ended when it returns true, and later work is refused; from the worker itself it answers false at once.
     */
    @Test
    void destroyDropsDelayedWorkAndEndsTheWorker() throws Exception {
        OrderedWorkqueue wq = OrderedWorkqueue.alloc("wq-destroy");
        ScheduledFuture<?> later = wq.schedule(() -> { }, 1, TimeUnit.HOURS);
        CompletableFuture<Boolean> fromWorker = new CompletableFuture<>();
        wq.execute(() -> fromWorker.complete(wq.destroy(Duration.ofSeconds(60))));
        assertFalse(fromWorker.get(10, TimeUnit.SECONDS), "the worker does not wait for its own end");
        assertTrue(wq.destroy(Duration.ofSeconds(10)));
        assertEquals(0, alive("wq-destroy"));
        assertFalse(later.isDone(), "dropped, never run");
        assertEquals(0, wq.getQueue().size());
        assertThrows(RejectedExecutionException.class, () -> wq.execute(() -> { }));
    }

    /**
     * A caller interrupted while {@code destroy} waits (for work that ignores the interrupt and runs on) gets EINTR with
     * its interrupt status set again, as CmaImpl and MadLayer pass it on; the queue is shut down all the same and ends
     * once its running work returns. A negative
     * timeout is EINVAL before anything is shut down.
     */
    @Test
    void anInterruptedDestroyIsEintrAndKeepsTheInterrupt() throws Exception {
        OrderedWorkqueue wq = OrderedWorkqueue.alloc("wq-eintr");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> wq.destroy(Duration.ofSeconds(-1)))
                .errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> wq.destroy(null)).errno());
        assertFalse(wq.isShutdown());
        CountDownLatch running = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        wq.execute(() -> {
            running.countDown();
            boolean waiting = true;
            while (waiting) { // deaf to shutdownNow's interrupt: the worker lives on while destroy waits for it
                try {
                    release.await();
                    waiting = false;
                } catch (InterruptedException e) {
                    // wait on
                }
            }
        });
        assertTrue(running.await(10, TimeUnit.SECONDS));
        Thread.currentThread().interrupt();
        ErrnoException e = assertThrows(ErrnoException.class, () -> wq.destroy(Duration.ofSeconds(10)));
        assertEquals(Errno.EINTR, e.errno());
        assertTrue(e.getMessage().contains("wq-eintr"), e.getMessage());
        assertTrue(Thread.interrupted(), "the interrupt status is set again (and cleared here)");
        assertTrue(wq.isShutdown());
        release.countDown();
        assertTrue(wq.destroy(Duration.ofSeconds(10)));
        assertEquals(0, alive("wq-eintr"));
    }

    @Test
    void aQueueNeedsAName() {
        for (String bad : new String[]{null, "", " "}) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> OrderedWorkqueue.alloc(bad));
            assertEquals(Errno.EINVAL, e.errno());
            assertTrue(e.getMessage().contains("'" + bad + "'"), e.getMessage());
        }
    }
}
