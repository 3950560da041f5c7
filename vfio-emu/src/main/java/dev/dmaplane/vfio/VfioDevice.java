package dev.dmaplane.vfio;

import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioUapi.*;

/** A vfio-pci device descriptor with typed calls over the byte path. */
public record VfioDevice(VfioUser user, int fd) {
    public VfioDevice {
        ErrnoException.requireNonNull(user, "VfioDevice: user");
    }

    /** {@code VFIO_GROUP_GET_DEVICE_FD}. */
    public static VfioDevice open(VfioGroup group, String name) {
        return new VfioDevice(group.user(), group.deviceFd(name));
    }

    /** {@code VFIO_DEVICE_GET_INFO}. */
    public DeviceInfo info() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(DEVICE_INFO);
            setU32(s, DEVICE_INFO, "argsz", (int) DEVICE_INFO.byteSize());
            user.ioctl(fd, VFIO_DEVICE_GET_INFO, s);
            return new DeviceInfo(u32(s, DEVICE_INFO, "flags"), u32(s, DEVICE_INFO, "num_regions"),
                    u32(s, DEVICE_INFO, "num_irqs"));
        }
    }

    /** {@code VFIO_DEVICE_GET_REGION_INFO}, asked again with the {@code argsz} the capabilities need. */
    public RegionInfo regionInfo(int index) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(REGION_INFO);
            setU32(s, REGION_INFO, "argsz", (int) REGION_INFO.byteSize());
            setU32(s, REGION_INFO, "index", index);
            user.ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, s);
            int need = u32(s, REGION_INFO, "argsz");
            if (need > s.byteSize()) {
                s = a.allocate(need, 8);
                setU32(s, REGION_INFO, "argsz", need);
                setU32(s, REGION_INFO, "index", index);
                user.ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, s);
            }
            List<RegionInfo.SparseArea> areas = new ArrayList<>();
            for (long at = u32(s, REGION_INFO, "cap_offset"); at != 0 && at + CAP_HEADER.byteSize() <= s.byteSize();
                 at = s.get(U32, at + 4)) {
                if (s.get(U16, at) == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
                    int n = s.get(U32, at + offset(CAP_SPARSE_MMAP, "nr_areas"));
                    for (int i = 0; i < n; i++) {
                        long r = at + CAP_SPARSE_MMAP.byteSize() + i * SPARSE_MMAP_AREA.byteSize();
                        areas.add(new RegionInfo.SparseArea(s.get(U64, r), s.get(U64, r + 8)));
                    }
                }
            }
            return new RegionInfo(index, u32(s, REGION_INFO, "flags"), u64(s, REGION_INFO, "size"),
                    u64(s, REGION_INFO, "offset"), areas);
        }
    }

    /** Reads {@code dst.byteSize()} bytes of region {@code index} at {@code offset}: the bytes read. */
    public long read(int index, long offset, MemorySegment dst) {
        return user.pread(fd, dst, regionOffset(index) + offset);
    }

    /** Writes {@code src} into region {@code index} at {@code offset}: the bytes written. */
    public long write(int index, long offset, MemorySegment src) {
        return user.pwrite(fd, src, regionOffset(index) + offset);
    }

    /** Reads the little-endian value of {@code size} (1, 2, 4 or 8) bytes at {@code offset} of region {@code index}. */
    public long read(int index, long offset, int size) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(8);
            read(index, offset, s.asSlice(0, size));
            return s.get(U64, 0);
        }
    }

    /** Writes the low {@code size} bytes of {@code value}, little-endian, at {@code offset} of region {@code index}. */
    public void write(int index, long offset, int size, long value) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(8);
            s.set(U64, 0, value);
            write(index, offset, s.asSlice(0, size));
        }
    }

    /** {@code mmap} of {@code length} bytes of BAR region {@code index} from {@code offset}: the user address. */
    public long mmap(int index, long offset, long length, int prot) {
        return user.mmap(fd, regionOffset(index) + offset, length, prot);
    }

    /** {@code VFIO_DEVICE_RESET}. */
    public void reset() {
        user.ioctl(fd, VFIO_DEVICE_RESET, 0);
    }

    /**
     * {@code VFIO_DEVICE_FEATURE} GET of {@code VFIO_DEVICE_FEATURE_DMA_BUF}: exports {@code ranges} ({offset,
     * length} pairs) of BAR {@code index} as one dma-buf.
     *
     * @return the dma-buf's file descriptor
     */
    public int exportDmaBuf(int index, long[]... ranges) {
        try (Arena arena = Arena.ofConfined()) {
            long size = DEVICE_FEATURE.byteSize() + FEATURE_DMA_BUF.byteSize() + ranges.length * REGION_DMA_RANGE.byteSize();
            MemorySegment s = arena.allocate(size, 8);
            s.set(U32, 0, (int) size);
            s.set(U32, 4, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF);
            MemorySegment data = s.asSlice(DEVICE_FEATURE.byteSize());
            setU32(data, FEATURE_DMA_BUF, "region_index", index);
            setU32(data, FEATURE_DMA_BUF, "nr_ranges", ranges.length);
            for (int i = 0; i < ranges.length; i++) {
                long at = FEATURE_DMA_BUF.byteSize() + i * REGION_DMA_RANGE.byteSize();
                data.set(U64, at, ranges[i][0]);
                data.set(U64, at + 8, ranges[i][1]);
            }
            return (int) user.ioctl(fd, VFIO_DEVICE_FEATURE, s);
        }
    }

    /** {@code close(fd)}. */
    public void close() {
        user.close(fd);
    }
}
