package dev.dmaplane.fence;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.trace.Tracer;

import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A fence timeline, as {@code dma_fence_context_alloc()} hands one out ({@code drivers/dma-buf/dma-fence.c}): a
 * machine-wide unique 64-bit context number, the driver and timeline names {@code dma_fence_ops} reports, and
 * increasing sequence numbers for the fences created on it. Fences of one context signal in seqno order, which is
 * what lets {@link Fence#isLater} and {@link Reservation#addFence} compare them. Thread-safe.
 */
public final class FenceContext {
    /** Context numbers start at 1, as the kernel's counter does; 0 is the stub fence's. */
    private static final AtomicLong NEXT_CONTEXT = new AtomicLong(1);

    private final long id;
    private final String driverName;
    private final String timelineName;
    private final Tracer tracer;
    private final FenceOps ops;
    private final AtomicLong lastSeqno = new AtomicLong();

    private FenceContext(String driverName, String timelineName, Tracer tracer, FenceOps ops) {
        this.id = NEXT_CONTEXT.getAndIncrement();
        this.driverName = driverName;
        this.timelineName = timelineName;
        this.tracer = tracer;
        this.ops = ops;
    }

    /** {@code dma_fence_context_alloc(1)} for a driver whose fences signal only by {@link Fence#signal()}. */
    public static FenceContext allocate(String driverName, String timelineName) {
        return allocate(driverName, timelineName, null, FenceOps.NONE);
    }

    /** As {@link #allocate(String, String)}, tracing every signal as a {@code FENCE} event to {@code tracer}. */
    public static FenceContext allocate(String driverName, String timelineName, Tracer tracer) {
        return allocate(driverName, timelineName, tracer, FenceOps.NONE);
    }

    /**
     * {@code dma_fence_context_alloc(1)} with the driver's {@code ops}.
     *
     * @param tracer where signals are traced, or {@code null} for no tracing
     */
    public static FenceContext allocate(String driverName, String timelineName, Tracer tracer, FenceOps ops) {
        checkName(driverName, "driver name");
        checkName(timelineName, "timeline name");
        ErrnoException.check(ops != null, Errno.EINVAL, "fence ops of " + driverName + ":" + timelineName
                + " are null (use FenceOps.NONE)");
        return new FenceContext(driverName, timelineName, tracer, ops);
    }

    private static void checkName(String name, String what) {
        ErrnoException.check(name != null && !name.isBlank(), Errno.EINVAL,
                what + " '" + name + "' is empty");
    }

    /** The context number, unique across the machine. */
    public long id() {
        return id;
    }

    /** {@code get_driver_name}. */
    public String driverName() {
        return driverName;
    }

    /** {@code get_timeline_name}. */
    public String timelineName() {
        return timelineName;
    }

    public FenceOps ops() {
        return ops;
    }

    public Optional<Tracer> tracer() {
        return Optional.ofNullable(tracer);
    }

    /** {@code dma_fence_init} with this context's next seqno (the first fence gets 1). */
    public Fence createFence() {
        return new Fence(this, lastSeqno.incrementAndGet(), List.of());
    }

    /** The seqno the newest fence of this context got, 0 before the first. */
    public long lastSeqno() {
        return lastSeqno.get();
    }

    /** A container fence ({@code dma_fence_array}) over {@code components}, with the next seqno. */
    Fence createContainer(List<Fence> components) {
        return new Fence(this, lastSeqno.incrementAndGet(), List.copyOf(components));
    }

    @Override
    public String toString() {
        return driverName + ":" + timelineName + "(" + id + ")";
    }
}
