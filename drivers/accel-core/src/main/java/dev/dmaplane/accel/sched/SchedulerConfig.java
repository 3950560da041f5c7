package dev.dmaplane.accel.sched;

import java.time.Duration;

/**
 * {@code struct drm_sched_init_args} ({@code include/drm/gpu_scheduler.h}): the scheduler's name, its ring
 * capacity in credits ({@code credit_limit}) and the job timeout ({@code timeout}); checked by
 * {@link Scheduler#create}.
 */
public record SchedulerConfig(String name, int creditLimit, Duration timeout) {
}
