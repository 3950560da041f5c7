package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.time.Duration;

/**
 * The driver's module parameters (amdgpu's {@code amdgpu_lockup_timeout}, ring sizes, the VRAM kept for page
 * tables): descriptors per ring (a power of two), the drm_sched job timeout, the bytes of page-table VRAM at the
 * top of the visible window.
 */
public record GpuOptions(int ringEntries, Duration jobTimeout, long pageTableBytes) {
    public static final GpuOptions DEFAULT = new GpuOptions(256, Duration.ofSeconds(10), 8L << 20);

    public GpuOptions {
        ErrnoException.check(ringEntries >= 2 && ringEntries <= 65536 && Integer.bitCount(ringEntries) == 1,
                Errno.EINVAL, "ring entries " + ringEntries + " is not a power of two in 2..65536");
        ErrnoException.check(jobTimeout != null && jobTimeout.isPositive(), Errno.EINVAL, "job timeout "
                + jobTimeout + " must be positive");
        ErrnoException.check(pageTableBytes >= 16384 && pageTableBytes % 4096 == 0, Errno.EINVAL,
                "page-table VRAM " + pageTableBytes + " must be whole 4 KiB pages, at least 16 KiB");
    }

    public GpuOptions withJobTimeout(Duration timeout) {
        return new GpuOptions(ringEntries, timeout, pageTableBytes);
    }

    public GpuOptions withRingEntries(int entries) {
        return new GpuOptions(entries, jobTimeout, pageTableBytes);
    }
}
