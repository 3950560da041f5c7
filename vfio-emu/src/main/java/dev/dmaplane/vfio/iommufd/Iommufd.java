package dev.dmaplane.vfio.iommufd;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.vfio.IovaRange;
import dev.dmaplane.vfio.VfioUser;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;

import static dev.dmaplane.vfio.VfioLayouts.U64;
import static dev.dmaplane.vfio.VfioLayouts.setU32;
import static dev.dmaplane.vfio.VfioLayouts.setU64;
import static dev.dmaplane.vfio.VfioLayouts.u32;
import static dev.dmaplane.vfio.VfioLayouts.u64;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;

/**
 * A {@code /dev/iommu} descriptor with typed calls: each builds the {@code iommufd.h} structure, issues the ioctl
 * through {@link VfioUser#ioctl} and decodes the answer, so the errors are those of the byte path. Arrays the kernel
 * reads or writes through a user pointer live in a scratch mapping of the user's address space.
 */
public record Iommufd(VfioUser user, int fd) {
    public Iommufd {
        ErrnoException.requireNonNull(user, "Iommufd: user");
    }

    /** {@code open("/dev/iommu")}. */
    public static Iommufd open(VfioUser user) {
        ErrnoException.requireNonNull(user, "Iommufd.open: user");
        return new Iommufd(user, user.openIommufd());
    }

    private MemorySegment struct(Arena a, StructLayout s) {
        MemorySegment m = a.allocate(s);
        setU32(m, s, "size", (int) s.byteSize());
        return m;
    }

    /** {@code IOMMU_IOAS_ALLOC}: the new IOAS's ID. */
    public int ioasAlloc() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = struct(a, IOAS_ALLOC);
            user.ioctl(fd, IOMMU_IOAS_ALLOC, m);
            return u32(m, IOAS_ALLOC, "out_ioas_id");
        }
    }

    /** {@code IOMMU_DESTROY}. */
    public void destroy(int id) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = struct(a, DESTROY);
            setU32(m, DESTROY, "id", id);
            user.ioctl(fd, IOMMU_DESTROY, m);
        }
    }

    /**
     * {@code IOMMU_IOAS_MAP} of {@code length} bytes at user address {@code uptr} with {@code IOMMU_IOAS_MAP_*}
     * {@code flags}: the IOVA (the one given with {@code FIXED_IOVA}, else the one the kernel picked).
     */
    public long map(int ioas, long uptr, long length, long iova, int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = struct(a, IOAS_MAP);
            setU32(m, IOAS_MAP, "flags", flags);
            setU32(m, IOAS_MAP, "ioas_id", ioas);
            setU64(m, IOAS_MAP, "user_va", uptr);
            setU64(m, IOAS_MAP, "length", length);
            setU64(m, IOAS_MAP, "iova", iova);
            user.ioctl(fd, IOMMU_IOAS_MAP, m);
            return u64(m, IOAS_MAP, "iova");
        }
    }

    /**
     * {@code IOMMU_IOAS_MAP_FILE} of {@code length} bytes of the memfd or dma-buf behind descriptor {@code file} from
     * byte {@code start}: the IOVA, as {@link #map}.
     */
    public long mapFile(int ioas, int file, long start, long length, long iova, int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = struct(a, IOAS_MAP_FILE);
            setU32(m, IOAS_MAP_FILE, "flags", flags);
            setU32(m, IOAS_MAP_FILE, "ioas_id", ioas);
            setU32(m, IOAS_MAP_FILE, "fd", file);
            setU64(m, IOAS_MAP_FILE, "start", start);
            setU64(m, IOAS_MAP_FILE, "length", length);
            setU64(m, IOAS_MAP_FILE, "iova", iova);
            user.ioctl(fd, IOMMU_IOAS_MAP_FILE, m);
            return u64(m, IOAS_MAP_FILE, "iova");
        }
    }

    /** {@code IOMMU_IOAS_UNMAP}: the bytes unmapped. */
    public long unmap(int ioas, long iova, long length) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = struct(a, IOAS_UNMAP);
            setU32(m, IOAS_UNMAP, "ioas_id", ioas);
            setU64(m, IOAS_UNMAP, "iova", iova);
            setU64(m, IOAS_UNMAP, "length", length);
            user.ioctl(fd, IOMMU_IOAS_UNMAP, m);
            return u64(m, IOAS_UNMAP, "length");
        }
    }

    /** {@code IOMMU_IOAS_COPY}: the destination IOVA. */
    public long copy(int dstIoas, int srcIoas, long srcIova, long length, long dstIova, int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = struct(a, IOAS_COPY);
            setU32(m, IOAS_COPY, "flags", flags);
            setU32(m, IOAS_COPY, "dst_ioas_id", dstIoas);
            setU32(m, IOAS_COPY, "src_ioas_id", srcIoas);
            setU64(m, IOAS_COPY, "length", length);
            setU64(m, IOAS_COPY, "dst_iova", dstIova);
            setU64(m, IOAS_COPY, "src_iova", srcIova);
            user.ioctl(fd, IOMMU_IOAS_COPY, m);
            return u64(m, IOAS_COPY, "dst_iova");
        }
    }

    /** {@code IOMMU_IOAS_IOVA_RANGES}, asked again with the count the kernel answers. */
    public List<IovaRange> iovaRanges(int ioas) {
        AddressSpace mm = user.mm();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = struct(a, IOAS_IOVA_RANGES);
            setU32(m, IOAS_IOVA_RANGES, "ioas_id", ioas);
            int room = 4;
            while (true) {
                long buf = mm.mmapAnonymous(room * IOVA_RANGE.byteSize(), Prot.PROT_READ | Prot.PROT_WRITE);
                try {
                    setU32(m, IOAS_IOVA_RANGES, "num_iovas", room);
                    setU64(m, IOAS_IOVA_RANGES, "allowed_iovas", buf);
                    try {
                        user.ioctl(fd, IOMMU_IOAS_IOVA_RANGES, m);
                    } catch (ErrnoException e) {
                        if (e.errno() == Errno.EMSGSIZE) {
                            room = u32(m, IOAS_IOVA_RANGES, "num_iovas");
                            continue;
                        }
                        throw e;
                    }
                    int n = u32(m, IOAS_IOVA_RANGES, "num_iovas");
                    MemorySegment out = a.allocate(n * IOVA_RANGE.byteSize(), 8);
                    mm.read(buf, out);
                    List<IovaRange> ranges = new ArrayList<>();
                    for (int i = 0; i < n; i++) {
                        ranges.add(new IovaRange(out.get(U64, i * 16L), out.get(U64, i * 16L + 8)));
                    }
                    return ranges;
                } finally {
                    mm.munmap(buf, room * IOVA_RANGE.byteSize());
                }
            }
        }
    }

    /** {@code IOMMU_IOAS_ALLOW_IOVAS} with {@code ranges} ({@code start} to {@code end} inclusive). */
    public void allowIovas(int ioas, List<IovaRange> ranges) {
        ErrnoException.requireNonNull(ranges, "Iommufd.allowIovas: ranges");
        AddressSpace mm = user.mm();
        long bytes = Math.max(1, ranges.size()) * IOVA_RANGE.byteSize();
        long buf = mm.mmapAnonymous(bytes, Prot.PROT_READ | Prot.PROT_WRITE);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment in = a.allocate(bytes, 8);
            for (int i = 0; i < ranges.size(); i++) {
                in.set(U64, i * 16L, ranges.get(i).start());
                in.set(U64, i * 16L + 8, ranges.get(i).end());
            }
            mm.write(buf, in);
            MemorySegment m = struct(a, IOAS_ALLOW_IOVAS);
            setU32(m, IOAS_ALLOW_IOVAS, "ioas_id", ioas);
            setU32(m, IOAS_ALLOW_IOVAS, "num_iovas", ranges.size());
            setU64(m, IOAS_ALLOW_IOVAS, "allowed_iovas", buf);
            user.ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, m);
        } finally {
            mm.munmap(buf, bytes);
        }
    }

    /**
     * {@code IOMMU_HWPT_ALLOC} for device {@code devId} over IOAS {@code ptId} with {@code IOMMU_HWPT_ALLOC_*}
     * {@code flags}: the HWPT's ID.
     */
    public int hwptAlloc(int devId, int ptId, int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = struct(a, HWPT_ALLOC);
            setU32(m, HWPT_ALLOC, "flags", flags);
            setU32(m, HWPT_ALLOC, "dev_id", devId);
            setU32(m, HWPT_ALLOC, "pt_id", ptId);
            user.ioctl(fd, IOMMU_HWPT_ALLOC, m);
            return u32(m, HWPT_ALLOC, "out_hwpt_id");
        }
    }

    /** {@code IOMMU_GET_HW_INFO}: {@code out_capabilities} of the IOMMU behind device {@code devId}. */
    public long hwCapabilities(int devId) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = struct(a, HW_INFO);
            setU32(m, HW_INFO, "dev_id", devId);
            user.ioctl(fd, IOMMU_GET_HW_INFO, m);
            return u64(m, HW_INFO, "out_capabilities");
        }
    }

    /** {@code IOMMU_HWPT_SET_DIRTY_TRACKING}. */
    public void setDirtyTracking(int hwpt, boolean enable) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = struct(a, HWPT_SET_DIRTY_TRACKING);
            setU32(m, HWPT_SET_DIRTY_TRACKING, "flags", enable ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0);
            setU32(m, HWPT_SET_DIRTY_TRACKING, "hwpt_id", hwpt);
            user.ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, m);
        }
    }

    /**
     * {@code IOMMU_HWPT_GET_DIRTY_BITMAP} of {@code [iova, iova + length)} in {@code pageSize} pages into a zeroed
     * bitmap: bit {@code n} for the page at {@code iova + n * pageSize}.
     */
    public BitSet dirtyBitmap(int hwpt, long iova, long length, long pageSize, int flags) {
        AddressSpace mm = user.mm();
        long bytes = Math.max(8, (length / Math.max(1, pageSize) + 63) / 64 * 8);
        long buf = mm.mmapAnonymous(bytes, Prot.PROT_READ | Prot.PROT_WRITE);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = struct(a, HWPT_GET_DIRTY_BITMAP);
            setU32(m, HWPT_GET_DIRTY_BITMAP, "hwpt_id", hwpt);
            setU32(m, HWPT_GET_DIRTY_BITMAP, "flags", flags);
            setU64(m, HWPT_GET_DIRTY_BITMAP, "iova", iova);
            setU64(m, HWPT_GET_DIRTY_BITMAP, "length", length);
            setU64(m, HWPT_GET_DIRTY_BITMAP, "page_size", pageSize);
            setU64(m, HWPT_GET_DIRTY_BITMAP, "data", buf);
            user.ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, m);
            MemorySegment out = a.allocate(bytes, 8);
            mm.read(buf, out);
            return BitSet.valueOf(out.toArray(ValueLayout.JAVA_LONG));
        } finally {
            mm.munmap(buf, bytes);
        }
    }

    /** {@code close(fd)}. */
    public void close() {
        user.close(fd);
    }
}
