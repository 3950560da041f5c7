package dev.dmaplane.accel;

import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.accel.sync.SyncFile;
import dev.dmaplane.accel.sync.SyncObj;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.Reservation;
import org.osgi.annotation.versioning.ProviderType;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * An open accelerator context ({@code struct drm_file}): GEM handles, CPU access, and one GPU VM
 * ({@code drm_gpuvm}). Every call fails with {@code EIO} after the device is unregistered and {@code EBADF} after
 * {@link #close}. A handle not in this context is {@code ENOENT} ({@code drm_gem_object_lookup} failing), except
 * for {@link #closeBo}.
 */
@ProviderType
public interface AccelContext extends AutoCloseable {
    /** The device this context was opened on. */
    AccelDevice device();

    /** The context id ({@code drm-client-id}). */
    int id();

    /** {@link #createBo(long, Placement, Set)} preferring VRAM and allowing host memory. */
    int createBo(long size);

    /**
     * Creates a buffer object ({@code DRM_IOCTL_*_GEM_CREATE}, {@code ttm_bo_init_reserved}) of {@code size} bytes
     * rounded up to pages, zeroed, placed in {@code preferred} or, failing that even after evicting unpinned objects
     * of any context, in another of {@code allowed}.
     *
     * @return the new handle
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a size of 0 or one that overflows when rounded,
     *                                           or a preferred placement not allowed; {@code EAGAIN} over the
     *                                           context's byte or handle limit; {@code ENOMEM} when nothing allowed
     *                                           fits and nothing is evictable
     */
    int createBo(long size, Placement preferred, Set<Placement> allowed);

    /**
     * {@link #createBo(long, Placement, Set)} with creation flags: {@link CreateFlag#VM_ALWAYS_VALID} makes the object
     * private to this context's GPU VM, so it cannot be exported.
     */
    int createBo(long size, Placement preferred, Set<Placement> allowed, Set<CreateFlag> flags);

    /**
     * {@code DRM_IOCTL_PRIME_HANDLE_TO_FD} ({@code drm_gem_prime_handle_to_fd}): the object's dma-buf, with a reference
     * for the caller to {@code put}. Exporting again while that dma-buf lives gives the same dma-buf. Importers the
     * device's BAR reaches peer-to-peer map its VRAM (pinned in VRAM when every importer does); for the others it
     * moves to host memory. Eviction of an exported object is a move with {@code moveNotify} to its importers.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENOENT} for a handle not in this context, {@code EPERM} for an
     *                                           object created {@link CreateFlag#VM_ALWAYS_VALID}
     */
    DmaBuf primeExport(int handle);

    /**
     * {@code DRM_IOCTL_PRIME_FD_TO_HANDLE} ({@code drm_gem_prime_fd_to_handle}): a handle for {@code dmabuf}. This
     * device's own export gives its object back: the handle it already has in this context, or a new handle on the
     * same object. Another exporter's dma-buf becomes an object backed by a dynamic attachment of the device's DMA
     * device, mapped for the GPU as SYSTEM runs; its {@code moveNotify} unmaps the GPU VM ranges bound to it, which
     * {@link #validate}/{@link #vmValidate} map again. Importing the same foreign dma-buf again gives the same handle.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EBADF} for a released (closed) dma-buf, {@code ENODEV} for a
     *                                           revoked one, {@code EINVAL} for null, {@code EAGAIN} over the
     *                                           context's limits, the exporter's errno for an attach or map it refuses
     */
    int primeImport(DmaBuf dmabuf);

    /**
     * Drops the handle ({@code DRM_IOCTL_GEM_CLOSE}); the object is freed when its last reference (the handle, a
     * GPU VM mapping) goes and its fences signalled.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a handle not in this context, as
     *                                           {@code drm_gem_handle_delete} answers (not the lookups' ENOENT)
     */
    void closeBo(int handle);

    BoInfo info(int handle);

    /** The object's reservation ({@code bo->base.resv}): its fences, the move fences at {@code KERNEL} usage. */
    Reservation reservation(int handle);

    /**
     * CPU read through the object's mmap ({@code ttm_bo_vm_fault}): an object in VRAM the CPU cannot see is moved
     * to the visible window or to host memory first; the read waits (bounded) for the object's kernel fences.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EFAULT} for a range outside the object, {@code ETIME} when
     *                                           its move does not finish in time
     */
    void read(int handle, long offset, MemorySegment dst);

    /** CPU write through the object's mmap, as {@link #read}. */
    void write(int handle, long offset, MemorySegment src);

    /** Moves the object to its preferred placement ({@code ttm_bo_validate}), evicting if needed, and pins it there. */
    void pin(int handle);

    /** @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} if the object is not pinned */
    void unpin(int handle);

    /**
     * Brings the object back to its preferred placement if it was evicted ({@code ttm_bo_validate}) and rewrites
     * the page tables of its VM mappings; what a submission does for every object it uses.
     */
    void validate(int handle);

    /**
     * {@code DRM_XE_VM_BIND_OP_MAP}: maps {@code length} bytes of the object from {@code boOffset} at GPU virtual
     * address {@code va}; the mapping holds a reference on the object.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for an unaligned or empty range or one outside the
     *                                           object or the VM, {@code EEXIST} for a range overlapping a live
     *                                           mapping ({@code drm_gpuva_insert}), {@code ENOENT} for an unknown
     *                                           handle
     */
    void vmBind(int handle, long boOffset, long va, long length, boolean writable);

    /**
     * {@code DRM_XE_VM_BIND_OP_UNMAP} of one whole mapping.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for an unaligned range, {@code ENOENT} when no
     *                                           mapping starts at {@code va} with that length
     */
    void vmUnbind(long va, long length);

    /** Rewrites the page tables of every mapping whose object moved ({@code drm_gpuvm_validate}). */
    void vmValidate();

    /** The objects of the handle table, by handle (placement queries for every object, as a listing shows them). */
    List<BoInfo> objects();

    /**
     * Submits a job ({@code DRM_IOCTL_AMDGPU_CS}, {@code DRM_IOCTL_XE_EXEC} on drm_sched): every object is
     * validated (moved home if evicted, its VM page tables rewritten), the job waits for the objects' fences
     * (implicit: a write for readers and writers, a read for writers and moves), for the explicit in-fences and
     * for the sync-object points, and its finished fence goes on each object's reservation at WRITE or READ
     * usage and into each signal sync object. A refused submission changes nothing.
     *
     * @return the job's finished fence; it carries {@code EFAULT} for a GPU page fault (the context is then
     *         banned), {@code ETIME} for a hung job (banned too), {@code ECANCELED} for a job cancelled by
     *         context close or device removal
     * @throws dev.dmaplane.errno.ErrnoException {@code ECANCELED} on a banned context; {@code EINVAL} for an
     *                                           engine out of range, no commands, commands the provider refuses,
     *                                           a wait point not submitted without WAIT_FOR_SUBMIT, a signal point
     *                                           not after the last; {@code ENOENT} for an unknown object or
     *                                           sync-object handle; {@code ETIME} when a WAIT_FOR_SUBMIT point is
     *                                           not submitted within 5 s
     */
    Fence submit(Submission submission);

    /**
     * The scheduling priority of this context's jobs ({@code AMDGPU_CTX_PRIORITY_*}, default
     * {@link SchedPriority#NORMAL}).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for {@link SchedPriority#KERNEL} (the driver's) or
     *                                           null; {@code EBUSY} once a job was submitted
     */
    void setPriority(SchedPriority priority);

    /** {@code DRM_IOCTL_SYNCOBJ_CREATE}: a new sync-object handle; flags {@link SyncObj#CREATE_SIGNALED} only. */
    int syncObjCreate(int flags);

    /** {@code DRM_IOCTL_SYNCOBJ_DESTROY}; {@code EINVAL} for an unknown handle, as {@code drm_syncobj_destroy}. */
    void syncObjDestroy(int handle);

    /**
     * {@code DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT} (points of 0: {@code DRM_IOCTL_SYNCOBJ_WAIT}): see
     * {@link dev.dmaplane.accel.sync.SyncObjWait#timelineWait}; {@code ETIME} when the timeout passes,
     * {@code ENOENT} for an unknown handle.
     *
     * @return the index of the first object found signalled
     */
    int syncObjWait(int[] handles, long[] points, int flags, Duration timeout);

    /** {@code DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL} of {@code point}, or {@code DRM_IOCTL_SYNCOBJ_SIGNAL} for 0. */
    void syncObjSignal(int handle, long point);

    /** {@code DRM_IOCTL_SYNCOBJ_RESET}: the object holds no fence. */
    void syncObjReset(int handle);

    /** {@code DRM_IOCTL_SYNCOBJ_QUERY}: the last signalled point, or the last submitted with QUERY_LAST_SUBMITTED. */
    long syncObjQuery(int handle, int flags);

    /** {@code DRM_IOCTL_SYNCOBJ_TRANSFER}: the fence of {@code srcPoint} of {@code src} becomes {@code dstPoint} of {@code dst}. */
    void syncObjTransfer(int src, long srcPoint, int dst, long dstPoint, int flags);

    /**
     * {@code DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD} with {@code EXPORT_SYNC_FILE}: a sync file of the fence of
     * {@code point}; {@code EINVAL} when nothing was submitted for it.
     */
    SyncFile syncObjExportSyncFile(int handle, long point);

    /** {@code DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE} with {@code IMPORT_SYNC_FILE}: the file's fence becomes {@code point} (0: the fence). */
    void syncObjImportSyncFile(int handle, long point, SyncFile file);

    /** {@code DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD}: the sync object itself, to share with another context. */
    SyncObj syncObjExport(int handle);

    /** {@code DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE}: a handle in this context for a shared sync object. */
    int syncObjImport(SyncObj obj);

    /**
     * DRM fdinfo keys ({@code Documentation/gpu/drm-usage-stats.rst}): {@code drm-driver}, {@code drm-client-id},
     * {@code drm-engine-<engine>} (busy nanoseconds, summed from each job's scheduled to finished times),
     * {@code drm-total-*}, {@code drm-resident-*} and {@code drm-active-*} for the regions {@code vram} and
     * {@code system}.
     */
    Map<String, String> fdinfo();

    /** Closes the context: every handle dropped, the VM destroyed ({@code drm_file_free}). Idempotent. */
    @Override
    void close();
}
