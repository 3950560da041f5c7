package dev.dmaplane.mm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.IntervalNotifier;
import dev.dmaplane.mm.IntervalSubscription;
import dev.dmaplane.mm.InvalidateReason;
import dev.dmaplane.mm.MmuRange;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The interval notifiers of one address space and their sequence numbers, after {@code mm/mmu_notifier.c}: the
 * tree's sequence is even while idle and odd while invalidations run; each invalidation stamps the current odd
 * value into every subscription it hits before calling back, and the sequence turns even again when the last
 * concurrent invalidation ends. {@code readBegin} sleeps while its subscription's stamp equals the running odd
 * value. Thread-safe.
 */
final class NotifierTree {
    private static final Logger LOG = LoggerFactory.getLogger(NotifierTree.class);
    private final Tracer tracer;
    private final String name;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition idle = lock.newCondition();
    /** {@code invalidate_seq}: even when idle; guarded by {@link #lock}. */
    private long seq = 2;
    /** {@code active_invalidate_ranges}; guarded by {@link #lock}. */
    private int active;
    /** Guarded by {@link #lock}. */
    private final List<Sub> subs = new ArrayList<>();
    /** How deep the current thread is inside invalidations, to refuse waits that could never end. */
    private final ThreadLocal<int[]> depth = ThreadLocal.withInitial(() -> new int[1]);

    NotifierTree(Tracer tracer, String name) {
        this.tracer = tracer;
        this.name = name;
    }

    /** One {@code struct mmu_interval_notifier}. */
    final class Sub implements IntervalSubscription {
        final long start;
        final long end;
        final IntervalNotifier callback;
        /** Guarded by {@link #lock} for writes; read without it by {@link #readRetry}. */
        volatile long stamp;
        boolean removed;

        Sub(long start, long end, IntervalNotifier callback) {
            this.start = start;
            this.end = end;
            this.callback = callback;
        }

        @Override
        public long start() {
            return start;
        }

        @Override
        public long end() {
            return end;
        }

        @Override
        public long readBegin() {
            return NotifierTree.this.readBegin(this);
        }

        @Override
        public boolean readRetry(long seq) {
            return stamp != seq;
        }

        @Override
        public void close() {
            remove(this);
        }

        @Override
        public String toString() {
            return "interval notifier [0x" + Long.toHexString(start) + ", 0x" + Long.toHexString(end) + ") of "
                    + name;
        }
    }

    /** {@code mmu_interval_notifier_insert}. */
    Sub insert(long start, long end, IntervalNotifier callback) {
        Sub s = new Sub(start, end, callback);
        lock.lock();
        try {
            // under a running invalidation the new subscription starts out collided (it may cover pages being
            // invalidated); when idle it gets an odd stamp that differs from the even tree sequence
            s.stamp = active > 0 ? seq : seq - 1;
            subs.add(s);
        } finally {
            lock.unlock();
        }
        return s;
    }

    /**
     * Runs one invalidation: {@code invalidate_range_start} (stamp and call back every overlapping subscription),
     * then {@code action} (the page-table change), then {@code invalidate_range_end}.
     */
    void invalidate(MmuRange range, InvalidateReason reason, Runnable action) {
        List<Sub> hit = new ArrayList<>();
        long cur;
        lock.lock();
        try {
            if (active++ == 0) {
                seq++;
            }
            cur = seq;
            for (Sub s : subs) {
                if (range.overlaps(s.start, s.end)) {
                    s.stamp = cur;
                    hit.add(s);
                }
            }
        } finally {
            lock.unlock();
        }
        int[] d = depth.get();
        d[0]++;
        try {
            for (Sub s : hit) {
                try {
                    s.callback.invalidate(range, reason, cur);
                } catch (RuntimeException e) {
                    // a notifier that throws is a bug in its driver; the invalidation goes on for the others, as
                    // the core mm cannot undo a change of the page tables (mmu_notifier_invalidate_range_start)
                    LOG.error("{}: {} notifier {} threw during the invalidation of [{}, +{})", name, reason, s,
                            Long.toHexString(range.start()), range.length(), e);
                    tracer.emit(TraceKind.INVALIDATE, name, range.start(), range.length(),
                            reason + " seq=" + cur + " notifier " + s + " threw " + e);
                }
            }
            if (!hit.isEmpty()) {
                tracer.emit(TraceKind.INVALIDATE, name, range.start(), range.length(),
                        reason + " seq=" + cur + " notifiers=" + hit.size());
            }
            action.run();
        } finally {
            d[0]--;
            lock.lock();
            try {
                if (--active == 0) {
                    seq++;
                    idle.signalAll();
                }
            } finally {
                lock.unlock();
            }
        }
    }

    /** {@code mmu_interval_read_begin}. */
    long readBegin(Sub s) {
        lock.lock();
        try {
            long v = s.stamp;
            if (v == seq) {
                refuseSelfWait(s, "mmu_interval_read_begin");
                while (seq == v) {
                    idle.awaitUninterruptibly();
                }
            }
            return v;
        } finally {
            lock.unlock();
        }
    }

    /** {@code mmu_interval_notifier_remove}: waits out an invalidation that covers {@code s}. */
    void remove(Sub s) {
        lock.lock();
        try {
            if (s.removed) {
                return;
            }
            long v = s.stamp;
            if (v == seq) {
                refuseSelfWait(s, "mmu_interval_notifier_remove");
                while (seq == v) {
                    idle.awaitUninterruptibly();
                }
            }
            s.removed = true;
            subs.remove(s);
        } finally {
            lock.unlock();
        }
    }

    private void refuseSelfWait(Sub s, String what) {
        if (depth.get()[0] > 0) {
            throw new ErrnoException(Errno.EDEADLK, what + " on " + s
                    + " from inside an invalidation that covers it would wait forever");
        }
    }
}
