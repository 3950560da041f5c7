package dev.dmaplane.vfio.impl;

import dev.dmaplane.fs.Inode;
import dev.dmaplane.vfio.uapi.IoctlTable;

import java.lang.foreign.MemorySegment;

/**
 * A memfd ({@code memfd_create}) in the process's descriptor table: a {@code MemFs} inode, for
 * {@code IOMMU_IOAS_MAP_FILE}. It has no ioctls.
 */
public final class MemfdFile implements VfioFile {
    private static final IoctlTable IOCTLS = IoctlTable.enotty("memfd");

    private final Inode inode;

    MemfdFile(Inode inode) {
        this.inode = inode;
    }

    public Inode inode() {
        return inode;
    }

    @Override
    public long ioctl(int cmd, MemorySegment arg) {
        return IOCTLS.dispatch(cmd, arg);
    }

    @Override
    public long ioctl(int cmd, long value) {
        return IOCTLS.dispatch(cmd, value);
    }

    @Override
    public void release() {
    }

    @Override
    public String toString() {
        return "memfd " + inode.path();
    }
}
