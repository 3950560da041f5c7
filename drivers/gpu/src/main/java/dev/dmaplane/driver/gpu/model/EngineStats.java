package dev.dmaplane.driver.gpu.model;

/**
 * One engine's counters since power-on, what DRM's fdinfo reports as {@code drm-engine-<name>} and a job count
 * (Documentation/gpu/drm-usage-stats.rst).
 *
 * @param engine    the engine's name ({@code ce0}, {@code ce1}, {@code compute})
 * @param busyNanos nanoseconds spent running descriptors
 * @param jobs      descriptors ended, whatever their status
 */
public record EngineStats(String engine, long busyNanos, long jobs) {
}
