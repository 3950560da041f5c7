package dev.dmaplane.vfio.iommufd;

import org.osgi.annotation.versioning.ConsumerType;
import org.osgi.annotation.versioning.ProviderType;

import java.lang.foreign.MemorySegment;

/**
 * An in-kernel user of an IOAS ({@code struct iommufd_access}, {@code drivers/iommu/iommufd/device.c}): what an
 * emulated (mdev-style) device's driver holds to reach the memory a user mapped into an IOAS without DMA, by
 * pinning the pages under an IOVA range ({@code iommufd_access_pin_pages}) or copying through it
 * ({@code iommufd_access_rw}). {@code IOMMU_IOAS_UNMAP} over pinned pages calls the driver's {@link Ops#unmap},
 * which must unpin them; pages still pinned after 100 calls fail the unmap with {@code EDEADLOCK}
 * ({@code Errno.EDEADLK}: the same number, 35, on x86-64)
 * ({@code iopt_unmap_iova_range}). The access holds its context open and its IOAS (whose {@code IOMMU_DESTROY} is
 * then {@code EBUSY}) until destroyed. Made by {@link dev.dmaplane.vfio.VfioUser#iommufdAccess}.
 * <p>
 * Threading: every operation takes the context's lock. {@link Ops#unmap} runs with no iommufd lock held: for an
 * {@code IOMMU_IOAS_UNMAP} on the thread of the unmap, as {@code iopt_unmap_iova_range} drops its locks before
 * {@code iommufd_access_notify_unmap}; for {@link #detach} and {@link #destroy} on the caller's thread, as
 * {@code iommufd_access_change_ioas} drops {@code ioas_lock} around it. The driver may unpin there or hand the unpin
 * to another thread and wait for it; from the start of a detach {@link #pinPages} and {@link #rw} are
 * {@code ENOENT}, while {@link #unpinPages} still works until the detach ends.
 */
@ProviderType
public interface IommufdAccess {
    /** {@code IOMMUFD_ACCESS_RW_READ}: read from the IOAS's memory. */
    int RW_READ = 0;
    /** {@code IOMMUFD_ACCESS_RW_WRITE}: write into it (the area must be mapped writable). */
    int RW_WRITE = 1;

    /** The driver's callbacks ({@code struct iommufd_access_ops}). */
    @ConsumerType
    @FunctionalInterface
    interface Ops {
        /**
         * {@code unmap}: {@code [iova, iova + length)} is being unmapped (or the access detached: {@code 0} and
         * {@code ULONG_MAX}); unpin every pin inside it before returning.
         */
        void unmap(long iova, long length);
    }

    /** The object's ID in its context ({@code access->obj.id}). */
    int id();

    /** The IOAS the access is attached to, or 0. */
    int ioas();

    /**
     * {@code iommufd_access_attach}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} when attached already, {@code EBUSY} while a detach is
     *                                           still telling the driver to unmap, {@code ENOENT} for an ID of no
     *                                           IOAS, {@code ENODEV} once destroyed
     */
    void attach(int ioasId);

    /**
     * {@code iommufd_access_detach}: {@link Ops#unmap} of everything first; pins the driver left are dropped (the
     * kernel warns) and logged.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENOENT} when not attached, {@code ENODEV} once destroyed
     */
    void detach();

    /**
     * {@code iommufd_access_pin_pages}: pins the pages under {@code [iova, iova + length)} and returns their physical
     * addresses, one per page from the page holding {@code iova}; {@link #unpinPages} with the same range undoes it.
     *
     * @param flags {@link #RW_READ} or {@link #RW_WRITE}
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for length 0, another flag, an IOVA off a page boundary, an area
     *                                           being unmapped ({@code prevent_access}) or one backed by a dma-buf;
     *                                           {@code EOVERFLOW} for a range that wraps; {@code ENOENT} when not
     *                                           attached or the range is not mapped contiguously; {@code EPERM} for
     *                                           a write to a read-only area; {@code ENODEV} once destroyed.
     *                                           Nothing is pinned then.
     */
    long[] pinPages(long iova, long length, int flags);

    /**
     * {@code iommufd_access_unpin_pages}: undoes {@link #pinPages} of exactly this range.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a range no pin of this access has (the kernel
     *                                           warns), {@code ENOENT} when not attached
     */
    void unpinPages(long iova, long length);

    /**
     * {@code iommufd_access_rw}: copies {@code data.byteSize()} bytes between {@code data} and the memory under
     * {@code iova}; {@link #RW_WRITE} writes into the IOAS's memory.
     *
     * @throws dev.dmaplane.errno.ErrnoException as {@link #pinPages} (alignment aside); nothing is copied then
     */
    void rw(long iova, MemorySegment data, int flags);

    /** {@code iommufd_access_destroy}: detached first if attached; the context's reference goes. Idempotent. */
    void destroy();
}
