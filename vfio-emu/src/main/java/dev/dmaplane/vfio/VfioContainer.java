package dev.dmaplane.vfio;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioUapi.*;

/**
 * A container descriptor with typed calls: each builds the {@code vfio.h} structure, issues the ioctl through
 * {@link VfioUser#ioctl} and decodes the answer, so the errors are those of the byte path.
 */
public record VfioContainer(VfioUser user, int fd) {
    public VfioContainer {
        ErrnoException.requireNonNull(user, "VfioContainer: user");
    }

    /** {@code open("/dev/vfio/vfio")}. */
    public static VfioContainer open(VfioUser user) {
        ErrnoException.requireNonNull(user, "VfioContainer.open: user");
        return new VfioContainer(user, user.openContainer());
    }

    /** {@code VFIO_CHECK_EXTENSION}. */
    public boolean checkExtension(int extension) {
        return user.ioctl(fd, VFIO_CHECK_EXTENSION, extension) > 0;
    }

    /** {@code VFIO_SET_IOMMU}. */
    public void setIommu(int type) {
        user.ioctl(fd, VFIO_SET_IOMMU, type);
    }

    /** {@code VFIO_IOMMU_MAP_DMA} of {@code size} bytes at {@code vaddr} to {@code iova} with {@code VFIO_DMA_MAP_FLAG_*}. */
    public void mapDma(long vaddr, long iova, long size, int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(DMA_MAP);
            setU32(m, DMA_MAP, "argsz", (int) DMA_MAP.byteSize());
            setU32(m, DMA_MAP, "flags", flags);
            setU64(m, DMA_MAP, "vaddr", vaddr);
            setU64(m, DMA_MAP, "iova", iova);
            setU64(m, DMA_MAP, "size", size);
            user.ioctl(fd, VFIO_IOMMU_MAP_DMA, m);
        }
    }

    /** {@code VFIO_IOMMU_UNMAP_DMA}: the bytes unmapped. */
    public long unmapDma(long iova, long size, int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(DMA_UNMAP);
            setU32(m, DMA_UNMAP, "argsz", (int) DMA_UNMAP.byteSize());
            setU32(m, DMA_UNMAP, "flags", flags);
            setU64(m, DMA_UNMAP, "iova", iova);
            setU64(m, DMA_UNMAP, "size", size);
            user.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, m);
            return u64(m, DMA_UNMAP, "size");
        }
    }

    /** {@code VFIO_IOMMU_GET_INFO}, asked twice when the first {@code argsz} was too small for the capabilities. */
    public IommuInfo info() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(IOMMU_TYPE1_INFO);
            setU32(m, IOMMU_TYPE1_INFO, "argsz", (int) IOMMU_TYPE1_INFO.byteSize());
            user.ioctl(fd, VFIO_IOMMU_GET_INFO, m);
            int need = u32(m, IOMMU_TYPE1_INFO, "argsz");
            if (need > m.byteSize()) {
                m = a.allocate(need, 8);
                setU32(m, IOMMU_TYPE1_INFO, "argsz", need);
                user.ioctl(fd, VFIO_IOMMU_GET_INFO, m);
            }
            int dmaAvail = -1;
            List<IovaRange> ranges = new ArrayList<>();
            for (long at = u32(m, IOMMU_TYPE1_INFO, "cap_offset"); at != 0; at = m.get(U32, at + 4)) {
                if (at + CAP_HEADER.byteSize() > m.byteSize()) {
                    throw new ErrnoException(Errno.EIO, "VFIO_IOMMU_GET_INFO: a capability at " + at
                            + " lies past the " + m.byteSize() + "-byte answer");
                }
                int id = m.get(U16, at);
                if (id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
                    dmaAvail = m.get(U32, at + offset(CAP_DMA_AVAIL, "avail"));
                } else if (id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
                    int n = m.get(U32, at + offset(CAP_IOVA_RANGE, "nr_iovas"));
                    for (int i = 0; i < n; i++) {
                        long r = at + CAP_IOVA_RANGE.byteSize() + i * IOVA_RANGE.byteSize();
                        ranges.add(new IovaRange(m.get(U64, r), m.get(U64, r + 8)));
                    }
                }
            }
            return new IommuInfo(u32(m, IOMMU_TYPE1_INFO, "flags"), u64(m, IOMMU_TYPE1_INFO, "iova_pgsizes"),
                    dmaAvail, ranges);
        }
    }

    /** {@code close(fd)}. */
    public void close() {
        user.close(fd);
    }
}
