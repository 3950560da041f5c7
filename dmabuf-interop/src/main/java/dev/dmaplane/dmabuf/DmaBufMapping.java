package dev.dmaplane.dmabuf;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import org.osgi.annotation.versioning.ProviderType;

import java.util.List;

/**
 * One mapping of a dma-buf for an attachment's device, what {@code dma_buf_map_attachment} returns: the
 * device-side segments ({@code sg_dma_address}/{@code sg_dma_len}) valid for that device only: IOVAs in its
 * IOMMU domain for host memory, peer-to-peer bus addresses for device memory.
 */
@ProviderType
public interface DmaBufMapping {
    /** Where a mapping is in its life. */
    enum State {
        /** Usable by the device. */
        LIVE,
        /**
         * The exporter announced a move ({@code move_notify}); still usable until the move fence signals, then
         * stale. Unmap and map again.
         */
        MOVING,
        /**
         * The backing it pointed at is gone (moved or revoked): the device's accesses through it fault and
         * dma-debug reports them. Its bus addresses stay reserved until {@link DmaBuf#unmap}.
         */
        STALE,
        /** Unmapped; nothing is left. */
        UNMAPPED
    }

    Attachment attachment();

    DmaDirection direction();

    /** The device-side segments, in buffer order. */
    List<DmaSegment> segments();

    /** Bytes mapped (the buffer size). */
    long length();

    State state();

    /**
     * The bus address of byte {@code offset} of the buffer for this mapping's device.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for an offset outside the buffer
     */
    long busAddress(long offset);
}
