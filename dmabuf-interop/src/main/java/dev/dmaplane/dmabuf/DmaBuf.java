package dev.dmaplane.dmabuf;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.resource.UContext;
import org.osgi.annotation.versioning.ProviderType;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * A shared buffer ({@code struct dma_buf}, {@code drivers/dma-buf/dma-buf.c}): a size, an exporter and its ops, a
 * reservation object, a unique inode number and an optional name, the attached devices, and a file-like
 * reference count. Made by {@link DmaBufs#export}, which returns the first reference.
 * <p>
 * <b>Locking</b> (the dma-buf locking convention): {@link #map}, {@link #unmap}, {@link #pin}, {@link #unpin},
 * {@link #cpuRead}, {@link #cpuWrite}, {@link #moveNotify} and {@link #revoke} need the reservation lock held by
 * the calling thread, else they fail with {@code EPERM} and change nothing (where the kernel's
 * {@code dma_resv_assert_held} would warn). {@link #mapUnlocked}/{@link #unmapUnlocked} take the lock themselves
 * and are for static importers only: a dynamic importer calling them gets {@code EPERM}, as it must map under the
 * lock it also holds to wait for the fences. {@link #attach}, {@link #detach}, {@link #get}, {@link #put},
 * {@link #beginCpuAccess}, {@link #endCpuAccess} must be called <em>without</em> the lock ({@code EDEADLK}).
 * <p>
 * Every failure leaves no partial state. Calls on a buffer whose last reference went fail with {@code EBADF}.
 */
@ProviderType
public interface DmaBuf {
    /** Bytes, a positive multiple of the page size. */
    long size();

    /** {@code exp_name}. */
    String exporterName();

    /** The unique inode number of the buffer's file ({@code file_inode(dmabuf->file)->i_ino}), from 1. */
    long ino();

    /** The name set with {@link #setName}, or null. */
    String name();

    /**
     * {@code DMA_BUF_SET_NAME}: names the buffer for bufinfo. Since Linux 6.5 the name may change while devices
     * are attached (older kernels refused with {@code EBUSY}); dmaplane follows the newer rule.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for null or a name of more than 31 characters
     *                                           ({@code DMA_BUF_NAME_LEN} with its terminator, as
     *                                           {@code strndup_user} refuses)
     */
    void setName(String name);

    /** The reservation object ({@code dmabuf->resv}). */
    Reservation resv();

    /** The exporter's private data. */
    Object priv();

    /** The exporter ops. */
    Exporter ops();

    /** {@code dma_buf_is_dynamic}. */
    boolean isDynamic();

    /** Whether {@link #revoke} was called: maps fail with {@code ENODEV}. */
    boolean isRevoked();

    /** References held ({@code file_count}); 0 once released. */
    long refCount();

    /** Whether the last reference went and the exporter's release ran. */
    boolean isReleased();

    /** Takes a reference ({@code get_dma_buf}). */
    void get();

    /** Drops a reference ({@code dma_buf_put}); the last one releases the buffer: the exporter's release runs once. */
    void put();

    /**
     * {@code dma_buf_fd}: installs a handle (an fd) for this buffer in {@code ctx}, holding one reference.
     */
    DmaBufHandle fd(UContext ctx);

    /** The attachments, oldest first. */
    List<Attachment> attachments();

    /**
     * {@code dma_buf_dynamic_attach} ({@code importer != null}) or {@code dma_buf_attach} ({@code null}).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a null device or an importer without
     *                                           {@code moveNotify}, the exporter's errno when its attach op
     *                                           refuses (e.g. device memory the device cannot reach),
     *                                           {@code EDEADLK} with the reservation lock held
     */
    Attachment attach(Device device, Importer importer);

    /**
     * {@code dma_buf_detach}. Mappings still held are a driver bug: each is reported (a {@code DMA_BUF} trace
     * event and a dma-debug {@code LEAK_AT_UNBIND} report naming the attachment) and unmapped, pins the core
     * took for them dropped, before the exporter's detach op runs.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for an attachment of another buffer or one already
     *                                           detached
     */
    void detach(Attachment attachment);

    /**
     * {@code dma_buf_map_attachment} (reservation lock held). For a dynamic exporter and a static importer the
     * exporter's pin runs first (unpinned again on failure or at unmap); for a static importer the call then
     * waits for the {@code KERNEL} fences of the reservation (a pending move), failing with {@code ETIMEDOUT}
     * (the kernel waits without limit) after unmapping again. Dynamic importers must wait for the fences
     * themselves before the device uses the mapping.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EPERM} without the lock, {@code EINVAL} for a direction of
     *                                           {@code NONE}, an attachment of another buffer or one detached,
     *                                           {@code ENODEV} after {@link #revoke}, the exporter's errno
     */
    DmaBufMapping map(Attachment attachment, DmaDirection direction);

    /**
     * The buffer's physical address list for an importer that maps it into an IOMMU domain of its own (reservation
     * lock held), as iommufd gets vfio-pci's ({@code iopt_map_dmabuf} calling {@code vfio_pci_dma_buf_iommufd_map});
     * see {@link Exporter.PhysOp}. The ranges stay the buffer's until the importer's {@code move_notify}, which
     * means revoke.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EPERM} without the lock, {@code EINVAL} for an attachment of
     *                                           another buffer, one detached, or one not made with
     *                                           {@link Importer#physical}, {@code ENODEV} after {@link #revoke},
     *                                           {@code EOPNOTSUPP} for an exporter without the op, the exporter's
     *                                           errno
     */
    List<PhysVec> physRanges(Attachment attachment);

    /** {@code dma_buf_map_attachment_unlocked}: takes the lock around {@link #map}; static importers only ({@code EPERM}). */
    DmaBufMapping mapUnlocked(Attachment attachment, DmaDirection direction);

    /**
     * {@code dma_buf_unmap_attachment} (reservation lock held); works on stale mappings too, and does nothing for one
     * the exporter already tore down at its stop ({@link #reclaimMappings}).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EPERM} without the lock, {@code EINVAL} for a mapping of
     *                                           another buffer or one already unmapped
     */
    void unmap(DmaBufMapping mapping);

    /** {@code dma_buf_unmap_attachment_unlocked}; static importers only ({@code EPERM}). */
    void unmapUnlocked(DmaBufMapping mapping);

    /**
     * {@code dma_buf_pin}: a dynamic importer keeps the backing in place (reservation lock held).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a static attachment, {@code EPERM} without the
     *                                           lock, the exporter's errno
     */
    void pin(Attachment attachment);

    /** {@code dma_buf_unpin}; {@code EINVAL} without a pin to drop. */
    void unpin(Attachment attachment);

    /**
     * {@code dma_buf_move_notify}, for the exporter (reservation lock held): every dynamic importer's
     * {@code moveNotify} runs, and every current mapping becomes {@link DmaBufMapping.State#MOVING}: still
     * usable until the exporter retires it with {@link #retireMappings} once the move completes.
     *
     * @return the move generation: mappings made before it are the ones the move retires
     */
    long moveNotify();

    /**
     * For the exporter, when a move has copied the data and the old backing is about to be freed (before the
     * move fence signals): every mapping made before {@code generation} becomes
     * {@link DmaBufMapping.State#STALE} and the importer device's access to it is cut (exporter's
     * {@code revokeMapping} op, else {@code DmaApi.revokeSg}), so no device reaches the old backing. Runs
     * without the reservation lock: the move's fence-signalling path must never wait for that lock.
     *
     * @return the mappings made stale
     */
    int retireMappings(long generation, String reason);

    /**
     * Revokes the buffer for the exporter (reservation lock held): from now on {@link #map} fails with
     * {@code ENODEV}, dynamic importers get {@code moveNotify}, and every mapping is made stale (device access cut)
     * once every fence of the reservation signalled, {@code BOOKKEEP} included ({@code dma_resv_usage}: DMA those
     * fences cover keeps working until they signal); at once when none is pending. The exporter frees the backing
     * only after those fences too. Idempotent.
     */
    void revoke(String reason);

    /**
     * For an exporter whose device is going away (driver unbind, hot unplug, bundle stop), after {@link #revoke}
     * with the reservation lock held: every mapping an importer still holds — one it did not unmap when it was
     * told — is a leak. Each is reported (a dma-debug {@code LEAK_AT_UNBIND} report on the importer's device naming
     * the importer, the buffer and {@code reason}, and a {@code DMA_BUF} trace event) and torn down as an unmap
     * would, pins the core took for it dropped. The importer's own later {@link #unmap} of such a mapping does
     * nothing; its attachment stays until it detaches.
     *
     * @return the mappings torn down
     * @throws dev.dmaplane.errno.ErrnoException {@code EPERM} without the lock, {@code EINVAL} before
     *                                           {@link #revoke} (the mappings would be pulled from under importers
     *                                           that were never told)
     */
    int reclaimMappings(String reason);

    /**
     * {@code dma_buf_begin_cpu_access} (without the lock): the exporter's op, then a wait for the fences of
     * writes ({@code WRITE}) before a CPU read, or of all accesses ({@code READ}) before a CPU write.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ETIMEDOUT} if they do not signal in time
     */
    void beginCpuAccess(DmaDirection direction);

    /** {@code dma_buf_end_cpu_access}. */
    void endCpuAccess(DmaDirection direction);

    /**
     * vmap-like CPU read of {@code dst.byteSize()} bytes at {@code offset} (reservation lock held).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} outside the buffer or without a {@code cpuRead}
     *                                           op (as {@code dma_buf_vmap} without {@code vmap}), {@code EPERM}
     *                                           without the lock, {@code ENODEV} after revoke
     */
    void cpuRead(long offset, MemorySegment dst);

    /** vmap-like CPU write of {@code src} at {@code offset}; as {@link #cpuRead}. */
    void cpuWrite(long offset, MemorySegment src);
}
