package dev.dmaplane.accel.sync;

/**
 * {@code struct sync_fence_info} ({@code include/uapi/linux/sync_file.h}): one fence of a {@link SyncFile}: its
 * timeline and driver names, status (1 signalled, 0 active, a negative errno on error) and signal time (0 while
 * active).
 */
public record SyncFenceInfo(String objName, String driverName, int status, long timestampNanos) {
}
