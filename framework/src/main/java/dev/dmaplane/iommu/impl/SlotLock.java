package dev.dmaplane.iommu.impl;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.locks.LockSupport;

/**
 * A spinlock kept in one word of a padded {@code long[]}, for the short per-CPU critical sections of the IOVA caches
 * (the kernel's {@code spin_lock_irqsave} on a {@code iova_cpu_rcache}). Keeping the lock word inside the array it
 * guards, at least {@link #PAD} longs from either end, means no other object's hot data can share its cache line,
 * whatever order the garbage collector lays objects out in, which a monitor in an object header cannot promise.
 * A waiter spins briefly, then yields, then parks for a microsecond at a time, so a preempted holder costs little.
 */
final class SlotLock {
    /** Longs of padding at each end of an array holding a lock word: two 64-byte lines. */
    static final int PAD = 16;

    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);

    private SlotLock() {
    }

    static void lock(long[] words, int index) {
        if (!LONGS.compareAndSet(words, index, 0L, 1L)) {
            lockSlow(words, index);
        }
    }

    private static void lockSlow(long[] words, int index) {
        for (int spins = 0; ; spins++) {
            if ((long) LONGS.getOpaque(words, index) == 0L && LONGS.compareAndSet(words, index, 0L, 1L)) {
                return;
            }
            if (spins < 100) {
                Thread.onSpinWait();
            } else if (spins < 200) {
                Thread.yield();
            } else {
                LockSupport.parkNanos(1_000);
            }
        }
    }

    static void unlock(long[] words, int index) {
        LONGS.setRelease(words, index, 0L);
    }
}
