package dev.dmaplane.trace;

import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.function.Consumer;
import java.util.function.Predicate;

/**
 * The machine's trace: every event goes to a bounded in-memory ring (like the ftrace ring buffer), to JFR when a
 * recording is on, and to subscribers. Thread-safe and lock-free: each event takes the next sequence number and
 * overwrites the oldest slot; a reader keeps only slots whose sequence number matches the one it expects, so an
 * event overwritten while being read is skipped, never shown out of place. Subscribers run in the emitting thread
 * and must be quick.
 */
public final class Tracer {
    /** Ring size used when none is given. */
    public static final int DEFAULT_CAPACITY = 1 << 16;

    private final AtomicReferenceArray<TraceEvent> ring;
    private final int mask;
    private final AtomicLong seq = new AtomicLong();
    private final List<Consumer<TraceEvent>> subscribers = new CopyOnWriteArrayList<>();
    private final long startNanos = System.nanoTime();
    private volatile boolean enabled = true;

    public Tracer() {
        this(DEFAULT_CAPACITY);
    }

    public Tracer(int capacity) {
        if (capacity <= 0 || Integer.bitCount(capacity) != 1) {
            throw new IllegalArgumentException("trace capacity must be a power of two, not " + capacity);
        }
        this.ring = new AtomicReferenceArray<>(capacity);
        this.mask = capacity - 1;
    }

    /**
     * {@link System#nanoTime()} when this trace began (the machine's boot): the zero of the timestamps the trace ring
     * shows, as the kernel's trace clock and printk's counts from boot.
     */
    public long startNanos() {
        return startNanos;
    }

    /** Turns recording into the ring and to subscribers on or off (benchmarks turn it off). */
    public void setEnabled(boolean enabled) {
        this.enabled = enabled;
    }

    public boolean isEnabled() {
        return enabled;
    }

    /** Records one event; returns it, or {@code null} when tracing is off. */
    public TraceEvent emit(TraceKind kind, String device, long address, long length, String detail) {
        ErrnoException.requireNonNull(kind, "trace event kind");
        if (!enabled) {
            return null;
        }
        long n = seq.incrementAndGet();
        TraceEvent e = new TraceEvent(n, System.nanoTime(), kind,
                device == null ? "-" : device, address, length, detail == null ? "" : detail);
        ring.set((int) (n - 1) & mask, e);
        DmaplaneJfrEvent jfr = new DmaplaneJfrEvent();
        if (jfr.shouldCommit()) {
            jfr.kind = kind.name();
            jfr.device = e.device();
            jfr.address = address;
            jfr.length = length;
            jfr.detail = e.detail();
            jfr.commit();
        }
        for (Consumer<TraceEvent> s : subscribers) {
            s.accept(e);
        }
        return e;
    }

    /** Sequence number of the newest event (0 when none was emitted). */
    public long lastSeq() {
        return seq.get();
    }

    /** The events still in the ring, oldest first. */
    public List<TraceEvent> snapshot() {
        return since(0);
    }

    /** The events still in the ring whose sequence number is above {@code afterSeq}, oldest first. */
    public List<TraceEvent> since(long afterSeq) {
        List<TraceEvent> out = new ArrayList<>();
        long last = seq.get();
        long first = Math.max(afterSeq + 1, last - ring.length() + 1);
        for (long s = Math.max(first, 1); s <= last; s++) {
            TraceEvent e = ring.get((int) (s - 1) & mask);
            if (e != null && e.seq() == s) {
                out.add(e);
            }
        }
        return out;
    }

    /** The events in the ring that match {@code filter}, oldest first. */
    public List<TraceEvent> select(Predicate<TraceEvent> filter) {
        ErrnoException.requireNonNull(filter, "trace filter");
        return since(0).stream().filter(filter).toList();
    }

    /** Calls {@code subscriber} for every later event until the returned handle is closed. */
    public AutoCloseable subscribe(Consumer<TraceEvent> subscriber) {
        ErrnoException.requireNonNull(subscriber, "subscriber");
        subscribers.add(subscriber);
        return () -> subscribers.remove(subscriber);
    }
}
