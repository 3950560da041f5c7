package dev.dmaplane.accel.sched;

/** {@code enum drm_gpu_sched_stat} ({@code include/drm/gpu_scheduler.h}): what a timed-out handler found. */
public enum TimeoutStatus {
    /** The engine was reset ({@code DRM_GPU_SCHED_STAT_RESET}); the job timer is armed again. */
    RESET,
    /** The job is still making progress ({@code DRM_GPU_SCHED_STAT_NO_HANG}); it stays pending, the timer re-armed. */
    NO_HANG,
    /** The device is gone ({@code DRM_GPU_SCHED_STAT_ENODEV}); the timer is not re-armed. */
    ENODEV
}
