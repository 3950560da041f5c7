package dev.dmaplane.nvmeuser;

import dev.dmaplane.vfio.VfioDevice;
import dev.dmaplane.vfio.VfioUser;
import org.osgi.annotation.versioning.ConsumerType;

/**
 * How a user-space driver gets its device and makes its memory reachable by it: the VFIO front end
 * ({@code Documentation/driver-api/vfio.rst}: the container/group model, or iommufd's IOAS with the device cdev),
 * seen as SPDK's {@code vtophys} with IOVA = VA ({@code lib/env_dpdk/memory.c}, {@code vfio_iommu_map_dma}).
 * Implementations: {@link ContainerFrontEnd}, {@link IommufdFrontEnd}.
 */
@ConsumerType
public interface DmaFrontEnd extends AutoCloseable {
    /** The process whose address space, memlock limit and descriptors the front end uses. */
    VfioUser user();

    /** The PCI function's name ({@code DDDD:BB:DD.F}) this front end opened its group or cdev for. */
    String bdf();

    /** The device file, opened once ({@code VFIO_GROUP_GET_DEVICE_FD}, or the cdev bound to the IOMMU file). */
    VfioDevice device();

    /**
     * Pins {@code length} bytes of the user's memory at {@code vaddr} and maps them for the device at IOVA
     * {@code vaddr} with read and write ({@code VFIO_IOMMU_MAP_DMA} or {@code IOMMU_IOAS_MAP} with
     * {@code FIXED_IOVA}).
     *
     * @throws dev.dmaplane.errno.ErrnoException the front end's errno: {@code EINVAL}, {@code EEXIST},
     *                                           {@code ENOMEM} over {@code RLIMIT_MEMLOCK}, {@code ENOSPC}
     */
    void map(long vaddr, long length);

    /** Undoes {@link #map} of exactly that range; returns the bytes unmapped. */
    long unmap(long vaddr, long length);

    /**
     * Maps {@code length} bytes of the dma-buf behind descriptor {@code dmabufFd} for the device and returns the
     * IOVA, where the kernel placed it ({@code IOMMU_IOAS_MAP_FILE}): the device then reaches the exporter's memory
     * (a GPU's VRAM) with no host memory in between. Revoked by the exporter, the range stops translating.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EOPNOTSUPP} for a front end that cannot map a dma-buf (type 1
     *                                           pins no {@code VM_PFNMAP} memory) or an exporter without physical
     *                                           ranges, {@code ENODEV} for a revoked buffer
     */
    long mapDmaBuf(int dmabufFd, long length);

    /** Undoes {@link #mapDmaBuf}; returns the bytes unmapped. */
    long unmapDmaBuf(long iova, long length);

    /** Whether the front end's files are still open ({@link #close} not called, nothing revoked them). */
    boolean isOpen();

    /** Closes the device file and the front end's files; what is still mapped is unmapped and unpinned. */
    @Override
    void close();
}
