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
    private volatile boolean workRequests;

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

    /**
     * Asks for work requests ({@link TraceKind#POST}, {@link TraceKind#COMPLETION}) in the ring and to subscribers;
     * off by default, as the post path is the hottest path (a JFR recording gets them whenever it enables them).
     */
    public void setWorkRequests(boolean on) {
        this.workRequests = on;
    }

    /**
     * Never committed: asked only whether its event type is enabled in a running recording (a static state), so
     * that the post path allocates nothing to ask.
     */
    private static final WorkRequestJfrEvent POST_PROBE = new WorkRequestJfrEvent();
    private static final WorkCompletionJfrEvent COMPLETION_PROBE = new WorkCompletionJfrEvent();

    /**
     * Whether a post of work requests must be traced: asked of the ring, or enabled in a running flight recording.
     * The post path reads it once per list of work requests; when false nothing else is done.
     */
    public boolean tracesPosts() {
        return (workRequests && enabled) || POST_PROBE.isEnabled();
    }

    /** Whether a work completion must be traced: asked of the ring, or enabled in a running flight recording. */
    public boolean tracesCompletions() {
        return (workRequests && enabled) || COMPLETION_PROBE.isEnabled();
    }

    /**
     * Records a work request posted to QP {@code qpn} of {@code device} ({@code rvt_post_one_wr}): in the ring when
     * asked, and as a {@code dev.dmaplane.WorkRequest} JFR event with typed fields.
     *
     * @param send   true for the send queue, false for the receive queue
     * @param length the total length of its scatter/gather list
     */
    public void posted(String device, int qpn, boolean send, String opcode, long wrId, long length, int numSge,
                       int flags) {
        ErrnoException.requireNonNull(device, "work request device");
        ErrnoException.requireNonNull(opcode, "work request opcode");
        String queue = send ? "send" : "recv";
        if (workRequests && enabled) {
            record(TraceKind.POST, device, -1, length, "qpn=" + qpn + " " + queue + " " + opcode + " wr_id=" + wrId
                    + " num_sge=" + numSge + " flags=0x" + Integer.toHexString(flags));
        }
        WorkRequestJfrEvent jfr = new WorkRequestJfrEvent();
        if (jfr.shouldCommit()) {
            jfr.device = device;
            jfr.qpn = qpn;
            jfr.queue = queue;
            jfr.opcode = opcode;
            jfr.wrId = wrId;
            jfr.length = length;
            jfr.numSge = numSge;
            jfr.flags = flags;
            jfr.commit();
        }
    }

    /**
     * Records a work completion of QP {@code qpn} of {@code device} entering its CQ ({@code rvt_cq_enter}): in the
     * ring when asked, and as a {@code dev.dmaplane.WorkCompletion} JFR event with typed fields.
     */
    public void completed(String device, int qpn, long wrId, String opcode, String status, long byteLen) {
        ErrnoException.requireNonNull(device, "work completion device");
        ErrnoException.requireNonNull(opcode, "work completion opcode");
        ErrnoException.requireNonNull(status, "work completion status");
        if (workRequests && enabled) {
            record(TraceKind.COMPLETION, device, -1, byteLen, "qpn=" + qpn + " " + opcode + " wr_id=" + wrId
                    + " status=" + status);
        }
        WorkCompletionJfrEvent jfr = new WorkCompletionJfrEvent();
        if (jfr.shouldCommit()) {
            jfr.device = device;
            jfr.qpn = qpn;
            jfr.wrId = wrId;
            jfr.opcode = opcode;
            jfr.status = status;
            jfr.byteLen = byteLen;
            jfr.commit();
        }
    }

    /** Records one event; returns it, or {@code null} when tracing is off. */
    public TraceEvent emit(TraceKind kind, String device, long address, long length, String detail) {
        ErrnoException.requireNonNull(kind, "trace event kind");
        if (!enabled) {
            return null;
        }
        TraceEvent e = record(kind, device, address, length, detail);
        DmaplaneJfrEvent jfr = new DmaplaneJfrEvent();
        if (jfr.shouldCommit()) {
            jfr.kind = kind.name();
            jfr.device = e.device();
            jfr.address = address;
            jfr.length = length;
            jfr.detail = e.detail();
            jfr.commit();
        }
        return e;
    }

    /** Puts one event in the ring and hands it to the subscribers. */
    private TraceEvent record(TraceKind kind, String device, long address, long length, String detail) {
        long n = seq.incrementAndGet();
        TraceEvent e = new TraceEvent(n, System.nanoTime(), kind,
                device == null ? "-" : device, address, length, detail == null ? "" : detail);
        ring.set((int) (n - 1) & mask, e);
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
