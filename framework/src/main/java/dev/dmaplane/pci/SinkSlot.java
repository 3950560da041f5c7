package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The interrupt controller input one of a function's interrupt sources (INTx, MSI, MSI-X) is wired to, and the count
 * of what it delivered and dropped: the part {@link Intx}, {@link Msi} and {@link Msix} share.
 *
 * @param <S> the source's sink type
 */
final class SinkSlot<S> {
    private final String owner;
    private final String kind;
    private final AtomicReference<S> sink = new AtomicReference<>();
    private final AtomicLong delivered = new AtomicLong();
    private final AtomicLong dropped = new AtomicLong();

    /** A slot of {@code owner} (e.g. {@code 0000:03:00.0 MSI-X}) for sinks of {@code kind} ({@code MSI-X}). */
    SinkSlot(String owner, String kind) {
        this.owner = owner;
        this.kind = kind;
    }

    /** @throws ErrnoException {@code EINVAL} for a null sink, {@code EBUSY} if another sink is attached */
    void attach(S s) {
        if (s == null) {
            throw new ErrnoException(Errno.EINVAL, owner + ": an " + kind + " sink to attach is null");
        }
        if (!sink.compareAndSet(null, s)) {
            throw new ErrnoException(Errno.EBUSY, owner + ": an " + kind + " sink is already attached");
        }
    }

    /** @throws ErrnoException {@code EINVAL} if {@code s} is not the attached sink */
    void detach(S s) {
        if (s == null || !sink.compareAndSet(s, null)) {
            throw new ErrnoException(Errno.EINVAL, owner + ": that " + kind + " sink is not the one attached");
        }
    }

    /** The attached sink, or null. */
    S get() {
        return sink.get();
    }

    Optional<S> current() {
        return Optional.ofNullable(sink.get());
    }

    void countDelivered() {
        delivered.incrementAndGet();
    }

    void countDropped() {
        dropped.incrementAndGet();
    }

    long delivered() {
        return delivered.get();
    }

    long dropped() {
        return dropped.get();
    }
}
