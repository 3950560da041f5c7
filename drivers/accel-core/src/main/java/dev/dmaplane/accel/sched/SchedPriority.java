package dev.dmaplane.accel.sched;

/**
 * {@code enum drm_sched_priority} ({@code include/drm/gpu_scheduler.h}): one run queue per priority, the higher
 * served first; the declaration order is the service order, {@link #KERNEL} first.
 */
public enum SchedPriority {
    /** Kernel work: buffer moves, page-table updates. */
    KERNEL,
    HIGH,
    NORMAL,
    LOW
}
