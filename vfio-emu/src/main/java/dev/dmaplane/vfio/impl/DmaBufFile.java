package dev.dmaplane.vfio.impl;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.MemorySegment;

/**
 * A dma-buf file in a VFIO user's descriptor table ({@code dma_buf_fd}): it holds one reference to the buffer, which
 * {@code close} drops ({@code dma_buf_file_release}); it has no ioctl this model serves.
 */
public final class DmaBufFile implements VfioFile {
    private final DmaBuf buf;
    private boolean released;

    public DmaBufFile(DmaBuf buf) {
        this.buf = buf;
    }

    /** The buffer the file holds a reference to. */
    public DmaBuf buffer() {
        return buf;
    }

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
        synchronized (this) {
            if (released) {
                return;
            }
            released = true;
        }
        buf.put();
    }

    @Override
    public String toString() {
        return "dma-buf " + buf.ino() + " (" + buf.exporterName() + ")";
    }
}
