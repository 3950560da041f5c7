package dev.dmaplane.fence;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.impl.Timeouts;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

/**
 * Operations on sets of fences ({@code drivers/dma-buf/dma-fence.c}, {@code dma-fence-array.c},
 * {@code dma-fence-unwrap.c}): waiting for all or any, and merging a set into one container fence.
 */
public final class Fences {
    private static final FenceContext STUB = FenceContext.allocate("dma_fence_stub", "stub");

    private Fences() {
    }

    /**
     * Waits until every fence has signalled or {@code timeout} passes, whichever is first (one budget for all);
     * whether all signalled. An empty set has nothing to wait for. {@code EINTR} if interrupted.
     */
    public static boolean awaitAll(Collection<Fence> fences, Duration timeout) {
        List<Fence> list = checked(fences);
        long deadline = Timeouts.deadline(Timeouts.toNanos(timeout));
        for (Fence f : list) {
            if (!f.await(Duration.ofNanos(Timeouts.remaining(deadline)))) {
                return false;
            }
        }
        return true;
    }

    /**
     * {@code dma_fence_wait_any_timeout}: waits until one of {@code fences} signals or {@code timeout} passes;
     * the first signalled fence in the collection's order, or empty on timeout. An empty set is {@code EINVAL},
     * as in the kernel; {@code EINTR} if interrupted.
     */
    public static Optional<Fence> awaitAny(Collection<Fence> fences, Duration timeout) {
        List<Fence> list = checked(fences);
        ErrnoException.check(!list.isEmpty(), Errno.EINVAL, "no fences to wait for");
        long nanos = Timeouts.toNanos(timeout);
        Optional<Fence> first = firstSignaled(list);
        if (first.isPresent() || nanos == 0) {
            return first;
        }
        CountDownLatch any = new CountDownLatch(1);
        Consumer<Fence> wake = f -> any.countDown();
        Set<Fence> registered = Collections.newSetFromMap(new IdentityHashMap<>());
        try {
            for (Fence f : list) {
                if (!registered.contains(f)) {
                    if (!f.addCallback(wake)) {
                        return firstSignaled(list);
                    }
                    registered.add(f);
                }
            }
            any.await(nanos, TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            throw Timeouts.interrupted("any of " + list);
        } finally {
            for (Fence f : registered) {
                f.removeCallback(wake);
            }
        }
        return firstSignaled(list);
    }

    /**
     * A container fence that signals once every one of {@code fences} has: a {@code dma_fence_array} on a
     * context of its own, created the way {@code dma_fence_unwrap_merge} does (containers among the inputs are
     * flattened into their components). The first component error to be signalled becomes the container's
     * error, as {@code dma_fence_array_set_pending_error} does. An empty set gives an already-signalled stub
     * fence ({@code dma_fence_get_stub}). Signals are traced through the first component's tracer, if any.
     */
    public static Fence all(Collection<Fence> fences) {
        List<Fence> flat = new ArrayList<>();
        for (Fence f : checked(fences)) {
            flat.addAll(f.isContainer() ? f.components() : List.of(f));
        }
        if (flat.isEmpty()) {
            Fence stub = STUB.createFence();
            stub.signal();
            return stub;
        }
        FenceContext ctx = FenceContext.allocate("dma_fence_array", "unbound",
                flat.getFirst().context().tracer().orElse(null), FenceOps.NONE);
        Fence array = ctx.createContainer(flat);
        AtomicInteger pending = new AtomicInteger(flat.size());
        AtomicReference<Errno> firstError = new AtomicReference<>();
        for (Fence component : flat) {
            Consumer<Fence> done = new Consumer<>() {
                @Override
                public void accept(Fence signalled) {
                    signalled.error().ifPresent(e -> firstError.compareAndSet(null, e));
                    if (pending.decrementAndGet() == 0) {
                        Errno e = firstError.get();
                        if (e != null) {
                            array.setError(e);
                        }
                        array.signal();
                    }
                }
            };
            if (!component.addCallback(done)) {
                done.accept(component);
            }
        }
        return array;
    }

    /** {@code dma_fence_unwrap_for_each}: the fences a container stands for, or the fence itself. */
    public static List<Fence> unwrap(Fence fence) {
        ErrnoException.check(fence != null, Errno.EINVAL, "fence to unwrap is null");
        return fence.isContainer() ? fence.components() : List.of(fence);
    }

    private static Optional<Fence> firstSignaled(List<Fence> list) {
        for (Fence f : list) {
            if (f.isSignaled()) {
                return Optional.of(f);
            }
        }
        return Optional.empty();
    }

    private static List<Fence> checked(Collection<Fence> fences) {
        ErrnoException.check(fences != null, Errno.EINVAL, "fence set is null");
        List<Fence> list = new ArrayList<>(fences.size());
        int i = 0;
        for (Fence f : fences) {
            ErrnoException.check(f != null, Errno.EINVAL, "fence " + i + " of " + fences.size() + " is null");
            list.add(f);
            i++;
        }
        return list;
    }
}
