package dev.dmaplane.vfio;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.hw.copyengine.CopyEngineRegs;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.iommufd.DeviceCdev;
import dev.dmaplane.vfio.iommufd.Iommufd;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.BitSet;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static dev.dmaplane.vfio.VfioLayouts.setU32;
import static dev.dmaplane.vfio.VfioLayouts.setU64;
import static dev.dmaplane.vfio.VfioTestMachine.ENGINE;
import static dev.dmaplane.vfio.VfioTestMachine.fails;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Hardware page tables and dirty tracking over iommufd, as drivers/iommu/iommufd/hw_pagetable.c
 * ({@code iommufd_hwpt_alloc}, {@code iommufd_hwpt_paging_alloc}'s EOPNOTSUPP without
 * {@code IOMMU_CAP_DIRTY_TRACKING}, {@code iommufd_hwpt_set_dirty_tracking}, {@code iommufd_hwpt_get_dirty_bitmap}),
 * device.c ({@code iommufd_get_hw_info}) and io_pagetable.c ({@code iopt_read_and_clear_dirty_data},
 * {@code iommufd_check_iova_range}) answer, with the bitmap layout of include/uapi/linux/iommufd.h
 * ({@code struct iommu_hwpt_get_dirty_bitmap}): the copy engine writes pages through the HWPT and the bitmap is
 * exactly those pages.
 */
class HwptDirtyTest {
    private static final long MIB = 1 << 20;
    private static final long PAGE = 4096;
    private static final int FIXED_RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
    private Machine machine;
    private Vfio vfio;
    private AddressSpace mm;
    private VfioUser user;
    private PciFunction engine;
    private final Arena arena = Arena.ofConfined();

    private void boot(boolean dirtyTracking) {
        machine = VfioTestMachine.boot(dirtyTracking);
        DeviceCore core = machine.devices();
        vfio = Vfio.of(machine);
        mm = machine.newAddressSpace("user");
        user = vfio.open(mm, 64 * MIB);
        core.registerDriver(vfio.driver());
        engine = (PciFunction) core.findDevice(ENGINE).orElseThrow();
        core.setDriverOverride(engine, "vfio-pci");
        core.reprobe(engine);
    }

    @AfterEach
    void close() {
        arena.close();
        user.close();
        assertEquals(0, vfio.pinnedPages(), "nothing pinned after close");
        assertEquals(0, user.lockedBytes());
        assertTrue(machine.iommu().domains().stream().noneMatch(d -> d.type() == IommuDomainType.UNMANAGED),
                "every HWPT's domain was freed");
        mm.close();
        machine.close();
    }

    private MemorySegment hwptArg(int flags, int devId, int ptId) {
        MemorySegment m = arena.allocate(HWPT_ALLOC);
        setU32(m, HWPT_ALLOC, "size", (int) HWPT_ALLOC.byteSize());
        setU32(m, HWPT_ALLOC, "flags", flags);
        setU32(m, HWPT_ALLOC, "dev_id", devId);
        setU32(m, HWPT_ALLOC, "pt_id", ptId);
        return m;
    }

    private MemorySegment bitmapArg(int hwpt, long iova, long length, long pageSize, int flags, long data) {
        MemorySegment m = arena.allocate(HWPT_GET_DIRTY_BITMAP);
        setU32(m, HWPT_GET_DIRTY_BITMAP, "size", (int) HWPT_GET_DIRTY_BITMAP.byteSize());
        setU32(m, HWPT_GET_DIRTY_BITMAP, "hwpt_id", hwpt);
        setU32(m, HWPT_GET_DIRTY_BITMAP, "flags", flags);
        setU64(m, HWPT_GET_DIRTY_BITMAP, "iova", iova);
        setU64(m, HWPT_GET_DIRTY_BITMAP, "length", length);
        setU64(m, HWPT_GET_DIRTY_BITMAP, "page_size", pageSize);
        setU64(m, HWPT_GET_DIRTY_BITMAP, "data", data);
        return m;
    }

    private static BitSet bits(int... set) {
        BitSet b = new BitSet();
        for (int i : set) {
            b.set(i);
        }
        return b;
    }

    @Test
    void hwptAllocErrnosAndTheDirtyBitmapIsExactlyThePagesTheEngineWrote() {
        boot(true);
        Iommufd fd = Iommufd.open(user);
        int ioas = fd.ioasAlloc();
        DeviceCdev cdev = DeviceCdev.open(user, ENGINE);
        int dev = cdev.bind(fd);
        assertEquals(IOMMU_HW_CAP_DIRTY_TRACKING, fd.hwCapabilities(dev), "the capability bit");

        fails(Errno.EOPNOTSUPP, () -> user.ioctl(fd.fd(), IOMMU_HWPT_ALLOC,
                hwptArg(IOMMU_HWPT_ALLOC_NEST_PARENT, dev, ioas)), "no nesting parents here");
        MemorySegment withData = hwptArg(0, dev, ioas);
        setU32(withData, HWPT_ALLOC, "data_len", 16);
        fails(Errno.EINVAL, () -> user.ioctl(fd.fd(), IOMMU_HWPT_ALLOC, withData), "data with type NONE");
        MemorySegment reserved = hwptArg(0, dev, ioas);
        setU32(reserved, HWPT_ALLOC, "__reserved", 1);
        fails(Errno.EOPNOTSUPP, () -> user.ioctl(fd.fd(), IOMMU_HWPT_ALLOC, reserved), "__reserved");
        fails(Errno.ENOENT, () -> fd.hwptAlloc(99, ioas, 0), "no device 99");
        fails(Errno.ENOENT, () -> fd.hwptAlloc(ioas, ioas, 0), "an IOAS is no device");
        fails(Errno.EINVAL, () -> fd.hwptAlloc(dev, dev, 0), "a device is no parent");
        fails(Errno.ENOENT, () -> fd.hwptAlloc(dev, 77, 0), "no parent 77");
        MemorySegment shortArg = hwptArg(0, dev, ioas);
        setU32(shortArg, HWPT_ALLOC, "size", 24);
        int plain = (int) user.ioctl(fd.fd(), IOMMU_HWPT_ALLOC, shortArg) == 0
                ? shortArg.get(ValueLayout.JAVA_INT_UNALIGNED, 16) : -1;
        fails(Errno.EINVAL, () -> fd.hwptAlloc(dev, plain, 0), "an HWPT with data type NONE is no parent");
        fails(Errno.EOPNOTSUPP, () -> fd.setDirtyTracking(plain, true), "allocated without DIRTY_TRACKING");
        fd.destroy(plain);

        long ring = mm.mmapAnonymous(PAGE, Prot.PROT_READ | Prot.PROT_WRITE);
        long src = mm.mmapAnonymous(8 * PAGE, Prot.PROT_READ | Prot.PROT_WRITE);
        long dst = mm.mmapAnonymous(8 * PAGE, Prot.PROT_READ | Prot.PROT_WRITE);
        fd.map(ioas, ring, PAGE, 0x1000_0000L, FIXED_RW);
        fd.map(ioas, src, 8 * PAGE, 0x2000_0000L, FIXED_RW);
        fd.map(ioas, dst, 8 * PAGE, 0x3000_0000L, FIXED_RW);
        int hwpt = fd.hwptAlloc(dev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
        assertEquals(hwpt, cdev.attach(hwpt), "attached to the HWPT given");
        fails(Errno.EBUSY, () -> fd.destroy(hwpt), "attached");
        fails(Errno.EBUSY, () -> fd.destroy(ioas), "the HWPT holds the IOAS");

        long data = mm.mmapAnonymous(PAGE, Prot.PROT_READ | Prot.PROT_WRITE);
        fails(Errno.EINVAL, () -> user.ioctl(fd.fd(), IOMMU_HWPT_GET_DIRTY_BITMAP,
                bitmapArg(hwpt, 0x3000_0000L, 8 * PAGE, PAGE, 0, data)), "tracking is off");
        fails(Errno.EOPNOTSUPP, () -> {
            MemorySegment m = arena.allocate(HWPT_SET_DIRTY_TRACKING);
            setU32(m, HWPT_SET_DIRTY_TRACKING, "size", 16);
            setU32(m, HWPT_SET_DIRTY_TRACKING, "flags", 2);
            setU32(m, HWPT_SET_DIRTY_TRACKING, "hwpt_id", hwpt);
            user.ioctl(fd.fd(), IOMMU_HWPT_SET_DIRTY_TRACKING, m);
        }, "unknown flag");
        fails(Errno.ENOENT, () -> fd.setDirtyTracking(ioas, true), "an IOAS is no HWPT");
        fd.setDirtyTracking(hwpt, true);
        assertEquals(new BitSet(), fd.dirtyBitmap(hwpt, 0x3000_0000L, 8 * PAGE, PAGE, 0), "clean after enabling");

        Bar.Mmio regs = engine.bar(0).orElseThrow().mmio();
        engine.setMaster(true);
        assertEquals(ST_OK, submit(regs, ring, 0x2000_0000L, 0x3000_1000L, (int) PAGE));
        assertEquals(ST_OK, submit(regs, ring, 0x2000_0000L, 0x3000_3800L, (int) PAGE), "pages 3 and 4");
        assertEquals(ST_OK, submit(regs, ring, 0x3000_6000L, 0x2000_0000L, (int) PAGE), "a read of page 6");

        int noClear = IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR;
        assertEquals(bits(1, 3, 4), fd.dirtyBitmap(hwpt, 0x3000_0000L, 8 * PAGE, PAGE, noClear), "NO_CLEAR");
        assertEquals(bits(0, 1, 2), fd.dirtyBitmap(hwpt, 0x3000_0000L, 8 * PAGE, 2 * PAGE, noClear), "8 KiB pages");
        assertEquals(bits(1, 2), fd.dirtyBitmap(hwpt, 0x3000_2000L, 4 * PAGE, PAGE, noClear), "from an offset");
        assertEquals(bits(1, 3, 4), fd.dirtyBitmap(hwpt, 0x3000_0000L, 8 * PAGE, PAGE, 0), "the bits kept");
        assertEquals(new BitSet(), fd.dirtyBitmap(hwpt, 0x3000_0000L, 8 * PAGE, PAGE, 0), "cleared by the read");
        assertEquals(bits(0), fd.dirtyBitmap(hwpt, 0x2000_0000L, 8 * PAGE, PAGE, 0),
                "of the source only the page the read of page 6 wrote");

        MemorySegment set = MemorySegment.ofArray(new long[]{1L << 7});
        mm.write(data, set);
        user.ioctl(fd.fd(), IOMMU_HWPT_GET_DIRTY_BITMAP, bitmapArg(hwpt, 0x3000_0000L, 8 * PAGE, PAGE, 0, data));
        MemorySegment back = MemorySegment.ofArray(new long[1]);
        mm.read(data, back);
        assertEquals(1L << 7, back.get(ValueLayout.JAVA_LONG, 0), "bits the user set stay set");

        fails(Errno.EOPNOTSUPP, () -> user.ioctl(fd.fd(), IOMMU_HWPT_GET_DIRTY_BITMAP,
                bitmapArg(hwpt, 0x3000_0000L, 8 * PAGE, PAGE, 2, data)), "unknown flag");
        fails(Errno.EINVAL, () -> user.ioctl(fd.fd(), IOMMU_HWPT_GET_DIRTY_BITMAP,
                bitmapArg(hwpt, 0x3000_0800L, 4 * PAGE, PAGE, 0, data)), "IOVA off the page");
        fails(Errno.EINVAL, () -> user.ioctl(fd.fd(), IOMMU_HWPT_GET_DIRTY_BITMAP,
                bitmapArg(hwpt, 0x3000_0000L, 8 * PAGE, 0, 0, data)), "page size 0");
        fails(Errno.EINVAL, () -> user.ioctl(fd.fd(), IOMMU_HWPT_GET_DIRTY_BITMAP,
                bitmapArg(hwpt, 0x3000_1000L, 4 * PAGE, 2 * PAGE, 0, data)), "IOVA off the bitmap's page size");
        fails(Errno.EINVAL, () -> user.ioctl(fd.fd(), IOMMU_HWPT_GET_DIRTY_BITMAP,
                bitmapArg(hwpt, 0x3000_0000L, 16 * PAGE, PAGE, 0, data)), "past the mapping");
        fails(Errno.EOVERFLOW, () -> user.ioctl(fd.fd(), IOMMU_HWPT_GET_DIRTY_BITMAP,
                bitmapArg(hwpt, -PAGE, 2 * PAGE, PAGE, 0, data)), "wraps");
        fails(Errno.ENOENT, () -> fd.dirtyBitmap(99, 0x3000_0000L, PAGE, PAGE, 0), "no HWPT 99");

        fd.setDirtyTracking(hwpt, false);
        regs.write(REG_CTRL, 8, CTRL_RESET);
        engine.setMaster(false);
        cdev.detach();
        fd.destroy(hwpt);
        fd.destroy(ioas);
        cdev.close();
        fd.close();
    }

    @Test
    void anIommuWithoutDirtyBitsRefusesDirtyTrackingHwpts() {
        boot(false);
        Iommufd fd = Iommufd.open(user);
        int ioas = fd.ioasAlloc();
        DeviceCdev cdev = DeviceCdev.open(user, ENGINE);
        int dev = cdev.bind(fd);
        assertEquals(0, fd.hwCapabilities(dev), "no IOMMU_HW_CAP_DIRTY_TRACKING");
        fails(Errno.EOPNOTSUPP, () -> fd.hwptAlloc(dev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING), "no dirty bits");
        int hwpt = fd.hwptAlloc(dev, ioas, 0);
        assertEquals(hwpt, cdev.attach(hwpt));
        fails(Errno.EOPNOTSUPP, () -> fd.setDirtyTracking(hwpt, true), "no dirty_ops");
        cdev.close();
        fd.close();
    }

    /** Resets the engine, writes descriptor 0 into the ring at IOVA 0x10000000 and rings; the status. */
    private int submit(Bar.Mmio regs, long ring, long srcIova, long dstIova, int length) {
        regs.write(REG_CTRL, 8, CTRL_RESET);
        regs.write(REG_RING_BASE, 8, 0x1000_0000L);
        regs.write(REG_RING_SIZE, 8, 8);
        regs.write(REG_CTRL, 8, CTRL_ENABLE);
        MemorySegment d = arena.allocate(CopyEngineRegs.DESC_SIZE);
        d.set(ValueLayout.JAVA_LONG_UNALIGNED, DESC_SRC, srcIova);
        d.set(ValueLayout.JAVA_LONG_UNALIGNED, DESC_DST, dstIova);
        d.set(ValueLayout.JAVA_INT_UNALIGNED, DESC_LEN, length);
        mm.write(ring, d);
        regs.write(REG_RING_TAIL, 8, 1);
        MemorySegment back = arena.allocate(DESC_SIZE);
        mm.read(ring, back);
        return back.get(ValueLayout.JAVA_INT_UNALIGNED, DESC_STATUS);
    }
}
