package dev.dmaplane.fence;

/**
 * The deadlock-avoidance algorithm of a {@link WwClass} ({@code Documentation/locking/ww-mutex-design.rst}).
 * Both order transactions by their acquire context's stamp, older (smaller stamp) first, and both only ever make
 * a context that already holds locks back off.
 */
public enum WwAlgorithm {
    /**
     * {@code DEFINE_WD_CLASS}: a younger context that asks for a lock held (or awaited) by an older one dies at
     * once with {@code EDEADLK}; an older one waits for a younger holder.
     */
    WAIT_DIE,
    /**
     * {@code DEFINE_WW_CLASS}: an older context that asks for a lock held by a younger one wounds the holder and
     * waits; the wounded context dies with {@code EDEADLK} the next time it has to wait for a lock (or at once,
     * if it is waiting). A younger context waits for an older holder.
     */
    WOUND_WAIT
}
