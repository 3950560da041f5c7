package dev.dmaplane.mm;

import dev.dmaplane.dma.SgTable;
import org.osgi.annotation.versioning.ProviderType;

import java.util.Set;

/**
 * Pages pinned by {@link AddressSpace#pin} ({@code pin_user_pages}): one pinned frame per page of the range, each
 * holding a pin count and a reference ({@code FOLL_PIN}), so the frames stay allocated, whatever happens to the
 * mapping, until unpinned. {@link #unpin()} releases them and refuses a second call with {@code EINVAL} (an
 * unbalanced {@code unpin_user_pages} is a bug worth reporting); {@link #close()} releases them if still pinned and
 * is otherwise a no-op, so try-with-resources is always safe. Thread-safe.
 */
@ProviderType
public interface PinnedPages extends AutoCloseable {
    /** The user virtual address the pin started at. */
    long address();

    /** Physical address of each pinned page, in order (page aligned); valid while pinned. */
    long[] physAddrs();

    /** Offset of the first byte into the first page. */
    long offset();

    /** Bytes pinned, from {@link #address()}. */
    long length();

    /** Number of pinned pages. */
    int pageCount();

    /** The flags of the pin. */
    Set<PinFlags> flags();

    /** Whether the pages are still pinned. */
    boolean isPinned();

    /**
     * The pinned bytes as a scatter-gather table with physically adjacent pages merged
     * ({@code sg_alloc_table_from_pages}).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} once unpinned
     */
    SgTable toSgTable();

    /**
     * {@code unpin_user_pages}: drops every pin.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} if already unpinned
     */
    void unpin();

    /**
     * {@code unpin_user_pages_dirty_lock(..., make_dirty=true)}: marks file pages the device wrote dirty, so
     * writeback saves what DMA stored, then unpins.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} if already unpinned
     */
    void unpinDirty();

    /** Unpins if still pinned; otherwise does nothing. */
    @Override
    void close();
}
