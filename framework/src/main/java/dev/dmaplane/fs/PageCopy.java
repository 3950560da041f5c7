package dev.dmaplane.fs;

import org.osgi.annotation.versioning.ConsumerType;

import java.lang.foreign.MemorySegment;

/**
 * The far end of a file read or write that goes page by page ({@code struct iov_iter} as {@code filemap_read} and
 * {@code generic_perform_write} walk it): the file hands each piece of a page in turn, so a device can DMA straight
 * from or into the page with no buffer in between.
 */
@ConsumerType
@FunctionalInterface
public interface PageCopy {
    /**
     * Moves the bytes of one piece: from {@code page} to the far end on a read, from the far end into {@code page}
     * on a write. {@code page} is part of one page (a cached page, a DAX block, or the shared zero page for a hole
     * on a read), valid only during the call; pieces come in file order.
     *
     * @param at the piece's offset from the start of the transfer
     * @return false to stop the transfer before this piece counts (the far end refused it): the read or write then
     * reports {@code at} bytes done; on a write, bytes of the refused piece may already be in the page
     */
    boolean copy(MemorySegment page, long at);
}
