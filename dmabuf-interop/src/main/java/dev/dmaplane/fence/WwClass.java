package dev.dmaplane.fence;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.concurrent.atomic.AtomicLong;

/**
 * A {@code struct ww_class} ({@code include/linux/ww_mutex.h}): the lock class that w/w mutexes and acquire
 * contexts must share, with its algorithm and the counter that hands each new context its stamp. Thread-safe.
 */
public final class WwClass {
    private final String name;
    private final WwAlgorithm algorithm;
    private final AtomicLong stamp = new AtomicLong();

    private WwClass(String name, WwAlgorithm algorithm) {
        ErrnoException.check(name != null && !name.isBlank(), Errno.EINVAL, "ww_class name '" + name + "' is empty");
        this.name = name;
        this.algorithm = algorithm;
    }

    /** {@code DEFINE_WW_CLASS}: a Wound-Wait class. */
    public static WwClass woundWait(String name) {
        return new WwClass(name, WwAlgorithm.WOUND_WAIT);
    }

    /** {@code DEFINE_WD_CLASS}: a Wait-Die class. */
    public static WwClass waitDie(String name) {
        return new WwClass(name, WwAlgorithm.WAIT_DIE);
    }

    /** A class of the given algorithm. */
    public static WwClass of(String name, WwAlgorithm algorithm) {
        ErrnoException.check(algorithm != null, Errno.EINVAL, "algorithm of ww_class '" + name + "' is null");
        return new WwClass(name, algorithm);
    }

    public String name() {
        return name;
    }

    public WwAlgorithm algorithm() {
        return algorithm;
    }

    /** The next stamp, as {@code ww_acquire_init} takes it from {@code ww_class->stamp}. */
    long nextStamp() {
        return stamp.incrementAndGet();
    }

    @Override
    public String toString() {
        return name + "(" + algorithm + ")";
    }
}
