package dev.dmaplane.dmabuf.impl;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBufMapping;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.List;

/** One mapping; its state changes under the buffer's mapping lock. */
final class MappingImpl implements DmaBufMapping {
    final AttachmentImpl attachment;
    final DmaDirection direction;
    final MappedSg sg;
    /** The buffer's move generation when the mapping was made. */
    final long generation;
    /** Whether the core pinned the exporter for this mapping (static importer, dynamic exporter). */
    final boolean corePinned;
    volatile State state = State.LIVE;
    /** Torn down by the exporter at its stop ({@link DmaBufImpl#reclaimMappings}); the importer's unmap is then a no-op. */
    volatile boolean reclaimed;

    MappingImpl(AttachmentImpl attachment, DmaDirection direction, MappedSg sg, long generation, boolean corePinned) {
        this.attachment = attachment;
        this.direction = direction;
        this.sg = sg;
        this.generation = generation;
        this.corePinned = corePinned;
    }

    @Override
    public Attachment attachment() {
        return attachment;
    }

    @Override
    public DmaDirection direction() {
        return direction;
    }

    @Override
    public List<DmaSegment> segments() {
        return sg.segments();
    }

    @Override
    public long length() {
        return sg.length();
    }

    @Override
    public State state() {
        return state;
    }

    @Override
    public long busAddress(long offset) {
        ErrnoException.check(offset >= 0 && offset < sg.length(), Errno.EINVAL, "offset " + offset
                + " is outside the " + sg.length() + "-byte mapping");
        long left = offset;
        for (DmaSegment s : sg.segments()) {
            if (left < s.length()) {
                return s.dmaAddress() + left;
            }
            left -= s.length();
        }
        throw new ErrnoException(Errno.EINVAL, "offset " + offset + " is beyond the mapped segments");
    }

    @Override
    public String toString() {
        return "mapping of dma-buf " + attachment.dmabuf.ino() + " for " + attachment.device().name() + " "
                + direction + " " + state + " at 0x" + Long.toHexString(sg.segments().getFirst().dmaAddress());
    }
}
