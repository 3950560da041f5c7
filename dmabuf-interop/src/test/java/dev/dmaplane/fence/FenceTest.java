package dev.dmaplane.fence;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code struct dma_fence} rules from {@code include/linux/dma-fence.h} and {@code drivers/dma-buf/dma-fence.c}. */
@Timeout(value = 20, unit = TimeUnit.SECONDS)
class FenceTest {
    private static final Duration LONG = Duration.ofSeconds(10);
    private final ExecutorService pool = Executors.newCachedThreadPool();

    @AfterEach
    void stopThreads() throws InterruptedException {
        pool.shutdownNow();
        assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS), "test threads did not stop");
    }

    private static Errno errnoOf(Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    /** dma-fence.c {@code dma_fence_context_alloc}: unique contexts; {@code dma_fence_init}: seqnos on a timeline. */
    @Test
    void contextsAreUniqueAndSeqnosIncrease() {
        FenceContext a = FenceContext.allocate("gpu", "gfx");
        FenceContext b = FenceContext.allocate("gpu", "gfx");
        assertNotEquals(a.id(), b.id());
        assertTrue(a.id() > 0, "context 0 is the stub's");
        Fence f1 = a.createFence();
        Fence f2 = a.createFence();
        assertEquals(1, f1.seqno());
        assertEquals(2, f2.seqno());
        assertEquals(2, a.lastSeqno());
        assertSame(a, f2.context());
        assertEquals(Errno.EINVAL, errnoOf(() -> FenceContext.allocate(" ", "gfx")));
        assertEquals(Errno.EINVAL, errnoOf(() -> FenceContext.allocate("gpu", null)));
        assertEquals(Errno.EINVAL, errnoOf(() -> FenceContext.allocate("gpu", "gfx", null, null)));
    }

    /** dma-fence.c {@code dma_fence_signal_timestamp_locked}: signals once, the second time -EINVAL; traced. */
    @Test
    void signalsExactlyOnce() {
        Tracer tracer = new Tracer();
        Fence f = FenceContext.allocate("gpu", "gfx", tracer).createFence();
        assertFalse(f.isSignaled());
        assertTrue(f.timestampNanos().isEmpty());
        long before = System.nanoTime();
        f.signal();
        assertTrue(f.isSignaled());
        assertTrue(f.timestampNanos().getAsLong() >= before);
        long stamp = f.timestampNanos().getAsLong();
        ErrnoException again = assertThrows(ErrnoException.class, f::signal);
        assertEquals(Errno.EINVAL, again.errno());
        assertTrue(again.getMessage().contains(f.toString()), again.getMessage());
        assertEquals(stamp, f.timestampNanos().getAsLong(), "a refused signal must not restamp");
        var events = tracer.select(e -> e.kind() == TraceKind.FENCE);
        assertEquals(1, events.size());
        assertEquals("gpu", events.getFirst().device());
        assertTrue(events.getFirst().detail().contains(f.toString()));
    }

    /** dma-fence.h {@code dma_fence_set_error}: only before signalling; the error travels with the signal. */
    @Test
    void errorOnlyBeforeSignal() {
        Tracer tracer = new Tracer();
        Fence f = FenceContext.allocate("gpu", "gfx", tracer).createFence();
        assertTrue(f.error().isEmpty());
        assertEquals(Errno.EINVAL, errnoOf(() -> f.setError(null)));
        f.setError(Errno.EIO);
        f.setError(Errno.ETIMEDOUT);
        f.signal();
        assertEquals(Errno.ETIMEDOUT, f.error().orElseThrow());
        assertEquals(Errno.EINVAL, errnoOf(() -> f.setError(Errno.ENOMEM)));
        assertEquals(Errno.ETIMEDOUT, f.error().orElseThrow(), "a refused error must not replace the real one");
        assertTrue(tracer.snapshot().getLast().detail().contains("error=ETIMEDOUT"));
    }

    /** dma-fence.h {@code dma_fence_get_status}: 0 pending, 1 signalled, the negative errno of a failed fence. */
    @Test
    void statusIsPendingSignalledOrTheNegativeError() {
        FenceContext ctx = FenceContext.allocate("gpu", "gfx");
        Fence ok = ctx.createFence();
        assertEquals(0, ok.status());
        ok.signal();
        assertEquals(1, ok.status());
        Fence failed = ctx.createFence();
        failed.setError(Errno.ETIMEDOUT);
        assertEquals(0, failed.status(), "an error shows only once the fence signalled");
        failed.signal();
        assertEquals(-110, failed.status());
    }

    /**
     * dma-fence.c {@code dma_fence_add_callback} / {@code dma_fence_remove_callback}: a callback runs once, in the
     * signalling thread; adding to a signalled fence is refused (-ENOENT); a removed callback never runs.
     */
    @Test
    void callbacksRunOnceInTheSignallingThread() throws Exception {
        Fence f = FenceContext.allocate("gpu", "gfx").createFence();
        List<String> ran = Collections.synchronizedList(new ArrayList<>());
        AtomicReference<Thread> ranIn = new AtomicReference<>();
        Consumer<Fence> first = x -> {
            ran.add("first");
            ranIn.set(Thread.currentThread());
        };
        Consumer<Fence> removed = x -> ran.add("removed");
        Consumer<Fence> second = x -> ran.add("second:" + x.isSignaled());
        assertTrue(f.addCallback(first));
        assertTrue(f.addCallback(removed));
        assertTrue(f.addCallback(second));
        assertEquals(Errno.EINVAL, errnoOf(() -> f.addCallback(first)));
        assertEquals(Errno.EINVAL, errnoOf(() -> f.addCallback(null)));
        assertTrue(f.removeCallback(removed));
        assertFalse(f.removeCallback(removed));

        Future<Thread> signaller = pool.submit(() -> {
            f.signal();
            return Thread.currentThread();
        });
        Thread signallingThread = signaller.get(10, TimeUnit.SECONDS);
        assertEquals(List.of("first", "second:true"), ran);
        assertSame(signallingThread, ranIn.get());

        Consumer<Fence> late = x -> ran.add("late");
        assertFalse(f.addCallback(late), "-ENOENT: the fence has signalled");
        assertFalse(f.removeCallback(first), "callbacks that ran are no longer registered");
        assertEquals(List.of("first", "second:true"), ran);
    }

    /** dma-fence.c {@code dma_fence_signal}: a throwing callback stops neither the signal nor the other callbacks. */
    @Test
    void throwingCallbackDoesNotStopTheOthers() {
        Fence f = FenceContext.allocate("gpu", "gfx").createFence();
        AtomicInteger after = new AtomicInteger();
        f.addCallback(x -> {
            throw new IllegalStateException("driver bug");
        });
        f.addCallback(x -> after.incrementAndGet());
        IllegalStateException e = assertThrows(IllegalStateException.class, f::signal);
        assertEquals("driver bug", e.getMessage());
        assertTrue(f.isSignaled());
        assertEquals(1, after.get());
    }

    /**
     * dma-fence.c {@code dma_fence_wait_timeout}: returns once another thread signals; times out otherwise. The
     * signaller starts only after the waiter has armed signalling (the {@code enable_signaling} hook), so the
     * wait is really blocked when the signal comes.
     */
    @Test
    void awaitReturnsWhenAnotherThreadSignals() throws Exception {
        CountDownLatch armed = new CountDownLatch(1);
        FenceContext ctx = FenceContext.allocate("gpu", "gfx", null, new FenceOps() {
            @Override
            public boolean enableSignaling(Fence fence) {
                armed.countDown();
                return true;
            }
        });
        Fence f = ctx.createFence();
        Future<?> signaller = pool.submit(() -> {
            assertTrue(armed.await(10, TimeUnit.SECONDS));
            f.signal();
            return null;
        });
        assertTrue(f.await(LONG));
        signaller.get(10, TimeUnit.SECONDS);
        assertTrue(f.await(Duration.ZERO));
    }

    /** dma-fence.c {@code dma_fence_wait_timeout}: 0 on timeout, a zero timeout only tests, negative is -EINVAL. */
    @Test
    void awaitTimesOut() {
        Fence f = FenceContext.allocate("gpu", "gfx").createFence();
        long start = System.nanoTime();
        assertFalse(f.await(Duration.ofMillis(50)));
        long waited = System.nanoTime() - start;
        assertTrue(waited >= TimeUnit.MILLISECONDS.toNanos(50), "returned after only " + waited + " ns");
        assertTrue(waited < TimeUnit.SECONDS.toNanos(5), "took " + waited + " ns");
        assertFalse(f.await(Duration.ZERO));
        assertEquals(Errno.EINVAL, errnoOf(() -> f.await(Duration.ofMillis(-1))));
        assertEquals(Errno.EINVAL, errnoOf(() -> f.await(null)));
    }

    /** dma-fence.c {@code dma_fence_default_wait} with {@code intr}: an interrupt ends the wait (-ERESTARTSYS). */
    @Test
    void interruptedAwaitFailsWithEintr() throws Exception {
        Fence f = FenceContext.allocate("gpu", "gfx").createFence();
        Future<Object> waiter = pool.submit(() -> {
            Thread.currentThread().interrupt();
            ErrnoException e = assertThrows(ErrnoException.class, () -> f.await(LONG));
            return List.of(e.errno(), Thread.currentThread().isInterrupted());
        });
        assertEquals(List.of(Errno.EINTR, true), waiter.get(10, TimeUnit.SECONDS));
        assertFalse(f.isSignaled());
    }

    /** dma-fence.h {@code dma_fence_is_later}: seqno order within one context; no order across contexts. */
    @Test
    void isLaterWithinAContextOnly() {
        FenceContext ctx = FenceContext.allocate("gpu", "gfx");
        Fence a = ctx.createFence();
        Fence b = ctx.createFence();
        assertTrue(b.isLater(a));
        assertFalse(a.isLater(b));
        assertFalse(a.isLater(a));
        Fence other = FenceContext.allocate("gpu", "compute").createFence();
        ErrnoException e = assertThrows(ErrnoException.class, () -> a.isLater(other));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains(other.toString()), e.getMessage());
    }

    /**
     * dma-fence.h {@code dma_fence_ops.enable_signaling} and {@code .signaled}: the hook runs once, lazily, on the
     * first wait or callback; returning false signals the fence; a true poll signals it too.
     */
    @Test
    void driverHooks() {
        AtomicInteger enabled = new AtomicInteger();
        AtomicReference<Boolean> hardwareDone = new AtomicReference<>(false);
        FenceContext ctx = FenceContext.allocate("npu", "ring0", null, new FenceOps() {
            @Override
            public boolean enableSignaling(Fence fence) {
                enabled.incrementAndGet();
                return fence.seqno() != 2;
            }

            @Override
            public boolean signaled(Fence fence) {
                return hardwareDone.get();
            }
        });
        Fence f = ctx.createFence();
        assertEquals(0, enabled.get(), "signalling is enabled lazily");
        assertTrue(f.addCallback(x -> { }));
        assertFalse(f.await(Duration.ZERO));
        f.enableSignaling();
        assertEquals(1, enabled.get());
        hardwareDone.set(true);
        assertTrue(f.isSignaled(), "the poll reports completion");
        assertEquals(Errno.EINVAL, errnoOf(f::signal));

        hardwareDone.set(false);
        Fence already = ctx.createFence();
        assertFalse(already.addCallback(x -> { }), "enable_signaling said the work is done");
        assertTrue(already.isSignaled());
        assertEquals(2, enabled.get());
    }

    /** dma-fence.c {@code dma_fence_wait_any_timeout} and waiting for several fences with one budget. */
    @Test
    void awaitAllAndAny() throws Exception {
        FenceContext ctx = FenceContext.allocate("gpu", "gfx");
        Fence a = ctx.createFence();
        Fence b = ctx.createFence();
        assertFalse(Fences.awaitAll(List.of(a, b), Duration.ofMillis(20)));
        assertTrue(Fences.awaitAny(List.of(a, b), Duration.ofMillis(20)).isEmpty());
        assertTrue(Fences.awaitAll(List.of(), Duration.ZERO));
        assertEquals(Errno.EINVAL, errnoOf(() -> Fences.awaitAny(List.of(), LONG)));
        List<Fence> withNull = new ArrayList<>(List.of(a));
        withNull.add(null);
        assertEquals(Errno.EINVAL, errnoOf(() -> Fences.awaitAll(withNull, LONG)));

        CountDownLatch go = new CountDownLatch(1);
        Future<?> signaller = pool.submit(() -> {
            assertTrue(go.await(10, TimeUnit.SECONDS));
            b.signal();
            return null;
        });
        go.countDown();
        assertSame(b, Fences.awaitAny(List.of(a, b, a), LONG).orElseThrow());
        signaller.get(10, TimeUnit.SECONDS);
        assertFalse(Fences.awaitAll(List.of(a, b), Duration.ofMillis(10)));
        a.signal();
        assertTrue(Fences.awaitAll(List.of(a, b), LONG));
        assertSame(a, Fences.awaitAny(List.of(a, b), Duration.ZERO).orElseThrow());
    }

    /**
     * dma-fence-array.c: a container signals when its last component does, carrying the first error signalled
     * ({@code dma_fence_array_set_pending_error}); dma-fence-unwrap.c flattens nested containers;
     * {@code dma_fence_get_stub} stands for the empty set.
     */
    @Test
    void allSignalsAfterTheLastComponentWithTheFirstError() {
        FenceContext gfx = FenceContext.allocate("gpu", "gfx");
        FenceContext copy = FenceContext.allocate("gpu", "copy");
        Fence a = gfx.createFence();
        Fence b = copy.createFence();
        Fence c = copy.createFence();
        Fence ab = Fences.all(List.of(a, b));
        Fence all = Fences.all(List.of(ab, c));
        assertTrue(all.isContainer());
        assertEquals(List.of(a, b, c), Fences.unwrap(all), "nested containers are flattened");
        assertEquals(List.of(a), Fences.unwrap(a));
        assertNotEquals(gfx.id(), all.context().id());

        c.setError(Errno.EIO);
        c.signal();
        a.setError(Errno.ETIMEDOUT);
        a.signal();
        assertFalse(all.isSignaled());
        assertFalse(ab.isSignaled());
        b.signal();
        assertTrue(all.isSignaled());
        assertEquals(Errno.EIO, all.error().orElseThrow(), "the first error signalled wins");
        assertEquals(Errno.ETIMEDOUT, ab.error().orElseThrow());

        Fence alreadyDone = Fences.all(List.of(a, b));
        assertTrue(alreadyDone.isSignaled(), "signalled components count at once");
        assertEquals(Errno.ETIMEDOUT, alreadyDone.error().orElseThrow());
        Fence stub = Fences.all(List.of());
        assertTrue(stub.isSignaled());
        assertFalse(stub.isContainer());
    }
}
