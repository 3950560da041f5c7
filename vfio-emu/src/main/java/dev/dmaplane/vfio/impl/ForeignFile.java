package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.resource.UObject;

import java.lang.foreign.MemorySegment;

/**
 * A descriptor of the process's table that another subsystem installed (a verbs object, ...), seen through VFIO's
 * calls: it has none of VFIO's ioctls ({@code ENOTTY}) and is closed by its owner's {@code release}, never here.
 */
record ForeignFile(UObject object) implements VfioFile {
    @Override
    public long ioctl(int cmd, MemorySegment arg) {
        throw new ErrnoException(Errno.ENOTTY, String.format("%s: ioctl %#x is not served here", this, cmd));
    }

    @Override
    public long ioctl(int cmd, long value) {
        throw new ErrnoException(Errno.ENOTTY, String.format("%s: ioctl %#x is not served here", this, cmd));
    }

    @Override
    public void release() {
        // the table releases the object itself
    }

    @Override
    public String toString() {
        return object.type() + " file " + object.handle();
    }
}
