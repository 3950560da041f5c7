package dev.dmaplane.vfio.impl;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufHandle;

/**
 * A dma-buf descriptor of the process's table ({@link DmaBufHandle}, {@code dma_buf_fd}) seen through VFIO's calls:
 * what {@code IOMMU_IOAS_MAP_FILE} maps; it has no ioctl this model serves. The handle holds the buffer's reference
 * and drops it when the descriptor is closed ({@code dma_buf_file_release}), so this view releases nothing.
 */
public record DmaBufFile(DmaBufHandle handle) implements VfioFile {
    /** The buffer the descriptor holds a reference to. */
    public DmaBuf buffer() {
        return handle.dmabuf();
    }

    @Override
    public void release() {
        // the handle drops the reference when the table closes it
    }

    @Override
    public String toString() {
        return "dma-buf " + buffer().ino() + " (" + buffer().exporterName() + ")";
    }
}
