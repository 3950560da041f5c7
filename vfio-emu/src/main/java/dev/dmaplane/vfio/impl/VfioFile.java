package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.MemorySegment;

/**
 * An open VFIO file ({@code struct file} with its {@code file_operations}): container, group, device, eventfd or
 * {@code /dev/iommu}.
 */
public interface VfioFile {
    /**
     * {@code unlocked_ioctl} with a pointer; files without one answer {@code ENOTTY}, as {@code vfs_ioctl} does for a
     * file without {@code f_op->unlocked_ioctl}.
     */
    default long ioctl(int cmd, MemorySegment arg) {
        throw new ErrnoException(Errno.ENOTTY, String.format("%s: no ioctl %#x", this, cmd));
    }

    /** {@code unlocked_ioctl} with a number; files without one answer {@code ENOTTY}. */
    default long ioctl(int cmd, long value) {
        throw new ErrnoException(Errno.ENOTTY, String.format("%s: no ioctl %#x", this, cmd));
    }

    /** {@code read} at {@code offset}; files without it answer {@code EINVAL}. */
    default long read(MemorySegment dst, long offset) {
        throw new ErrnoException(Errno.EINVAL, this + " has no read");
    }

    /** {@code write} at {@code offset}; files without it answer {@code EINVAL}. */
    default long write(MemorySegment src, long offset) {
        throw new ErrnoException(Errno.EINVAL, this + " has no write");
    }

    /** {@code mmap}; files without it answer {@code ENODEV}, as a file without {@code f_op->mmap}. */
    default long mmap(long offset, long length, int prot) {
        throw new ErrnoException(Errno.ENODEV, this + " cannot be mmapped");
    }

    /** {@code release}: the last reference to the file went. */
    void release();
}
