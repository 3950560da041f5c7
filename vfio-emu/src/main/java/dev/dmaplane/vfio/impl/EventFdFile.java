package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.vfio.VfioLayouts;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/**
 * An eventfd ({@code fs/eventfd.c}, opened {@code EFD_NONBLOCK}): the counter VFIO signals for an interrupt.
 * {@code read} of 8 bytes returns the count and resets it, {@code EAGAIN} while it is 0.
 */
final class EventFdFile implements VfioFile {
    private final IrqTrigger trigger = new IrqTrigger();

    IrqTrigger trigger() {
        return trigger;
    }

    @Override
    public long read(MemorySegment dst, long offset) {
        if (dst.byteSize() < 8) {
            throw new ErrnoException(Errno.EINVAL, "eventfd read of " + dst.byteSize() + " bytes, 8 needed");
        }
        long n;
        try {
            n = trigger.await(0, TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "eventfd read interrupted", e);
        }
        if (n == 0) {
            throw new ErrnoException(Errno.EAGAIN, "eventfd: the count is 0");
        }
        dst.set(VfioLayouts.U64, 0, n);
        return 8;
    }

    @Override
    public void release() {
    }

    @Override
    public String toString() {
        return "eventfd";
    }
}
