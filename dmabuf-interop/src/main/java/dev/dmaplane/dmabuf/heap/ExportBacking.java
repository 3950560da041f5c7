package dev.dmaplane.dmabuf.heap;

import dev.dmaplane.dma.SgTable;
import dev.dmaplane.dmabuf.heap.VramExporter.Target;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import org.osgi.annotation.versioning.ConsumerType;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * The memory behind one buffer a {@link P2pExporter} exports, as a GPU driver's memory manager holds it (a TTM
 * buffer object's {@code ttm_resource}): a range of the exporting function's VRAM BAR or host pages, a move between
 * the two that returns its fence, CPU access, and the end of the exporter's hold. The exporter calls the methods
 * with the buffer's reservation lock held, except {@link #location} for a placement query and {@link #release}; it
 * has checked its own pins before a move. A backing takes its own locks after the reservation lock, never before.
 */
@ConsumerType
public interface ExportBacking {
    /** Where the bytes are now. */
    sealed interface Location permits InVram, InHost {
        /** For traces: {@code "VRAM 0000:03:00.0 BAR2 +0x1000"}, {@code "system memory, 3 block(s)"}. */
        String describe();
    }

    /** {@code size} bytes of the exporting function's memory BAR from bus address {@code busAddress}. */
    record InVram(long busAddress, long size, String describe) implements Location {
        public InVram {
            ErrnoException.check(describe != null && size > 0, Errno.EINVAL, "VRAM location of " + size
                    + " bytes at bus address " + busAddress + " without a description or bytes");
        }
    }

    /** Host page frames, as the physical addresses an importer maps with its DMA API. */
    record InHost(SgTable pages, String describe) implements Location {
        public InHost {
            ErrnoException.check(pages != null && describe != null, Errno.EINVAL, "host location '" + describe
                    + "' without pages or a description");
        }
    }

    /** A move that has its destination and has not started ({@link #prepare}). */
    interface PendingMove {
        /** Where the bytes will be. */
        String describe();

        /**
         * Switches the backing to the destination at once (CPU access and {@link #location()} see it from now on) and
         * starts the copy once every fence of {@code after} signalled. When the bytes are there (checked), it runs
         * {@code retire} (the exporter cuts importers' access to the old place), frees the old place, and only then
         * does the move's completion follow; a failed copy sets an error on the fence.
         *
         * @return the fence the exporter adds at {@code KERNEL} usage: signalled when the bytes are at the destination
         */
        Fence start(List<Fence> after, Runnable retire, String reason);

        /** Gives the destination back without moving. */
        void cancel();
    }

    /** Bytes. */
    long size();

    /** Where the bytes are now, or null once {@link #release released}. */
    Location location();

    /**
     * Finds room in {@code target} for a move; nothing moves yet.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENOMEM} when the target has no room, {@code EBUSY} when the
     *                                           backing's owner keeps it where it is (its own pins)
     */
    PendingMove prepare(Target target);

    /** Keeps the backing where it is (an importer's or the exporter's pin); counted. */
    void pin();

    /** Drops one {@link #pin}. */
    void unpin();

    /** CPU read at {@code offset}, wherever the bytes are. */
    void read(long offset, MemorySegment dst);

    /** CPU write at {@code offset}, wherever the bytes are. */
    void write(long offset, MemorySegment src);

    /**
     * The exporter's hold ends (the dma-buf was revoked or released, and every fence of its reservation signalled):
     * free the memory, or drop the reference the export held. Called once: from a fence callback, or with the
     * reservation lock held when no fence was pending.
     */
    void release();
}
