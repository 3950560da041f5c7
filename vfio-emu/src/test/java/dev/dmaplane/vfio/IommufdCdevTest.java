package dev.dmaplane.vfio;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.fs.MemFs;
import dev.dmaplane.hw.copyengine.CopyEngineRegs;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
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
import java.time.Duration;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static dev.dmaplane.vfio.VfioLayouts.DEVICE_INFO;
import static dev.dmaplane.vfio.VfioLayouts.setU32;
import static dev.dmaplane.vfio.VfioLayouts.setU64;
import static dev.dmaplane.vfio.VfioTestMachine.*;
import static dev.dmaplane.vfio.VfioUapi.VFIO_DEVICE_GET_INFO;
import static dev.dmaplane.vfio.VfioUapi.VFIO_PCI_BAR0_REGION_INDEX;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The vfio device cdev over iommufd, as drivers/vfio/device_cdev.c ({@code vfio_device_fops_cdev_open},
 * {@code vfio_df_ioctl_bind_iommufd} with {@code vfio_device_block_group}'s EBUSY, {@code vfio_df_ioctl_attach_pt},
 * {@code vfio_df_ioctl_detach_pt}), vfio_main.c ({@code vfio_device_fops_unl_ioctl}: EINVAL before
 * {@code access_granted}) and drivers/iommu/iommufd/device.c ({@code iommufd_device_bind}, {@code _attach} with its
 * auto domain, {@code _replace}, {@code _detach}, {@code iopt_table_enforce_dev_resv_regions}) answer, after
 * Documentation/userspace-api/iommufd.rst and the VFIO cdev part of Documentation/driver-api/vfio.rst. The copy
 * engine DMAs through the IOAS, real bytes read back.
 */
class IommufdCdevTest {
    private static final long MIB = 1 << 20;
    private static final int RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    private static final int FIXED_RW = RW | IOMMU_IOAS_MAP_FIXED_IOVA;
    private final Machine machine = VfioTestMachine.boot();
    private final DeviceCore core = machine.devices();
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("user");
    private final VfioUser user = vfio.open(mm, 64 * MIB);
    private final Arena arena = Arena.ofConfined();
    private final PciFunction engine;
    private final IommuGroup iommuGroup;
    private final long pinsBefore = machine.memory().pinsOutstanding();

    IommufdCdevTest() {
        core.registerDriver(vfio.driver());
        engine = (PciFunction) core.findDevice(ENGINE).orElseThrow();
        core.setDriverOverride(engine, "vfio-pci");
        core.reprobe(engine);
        iommuGroup = machine.iommu().groupOf(engine).orElseThrow();
    }

    @AfterEach
    void close() {
        arena.close();
        user.close();
        assertEquals(0, vfio.pinnedPages(), "nothing pinned after close");
        assertEquals(pinsBefore, machine.memory().pinsOutstanding(), "no page pinned after close");
        assertEquals(0, user.lockedBytes());
        assertTrue(machine.iommu().domains().stream().noneMatch(d -> d.type() == IommuDomainType.UNMANAGED),
                "every HWPT's domain was freed");
        assertEquals(IommuDomainType.DMA, iommuGroup.domain().type(), "the group is the DMA API's again");
        assertEquals(null, iommuGroup.owner(), "no DMA owner left");
        mm.close();
        machine.close();
    }

    @Test
    void nothingButBindBeforeBindAndTheGroupFrontEndExcludesIt() {
        fails(Errno.ENOENT, () -> user.openDevice(FN0), "not bound to vfio-pci");
        DeviceCdev cdev = DeviceCdev.open(user, ENGINE);
        MemorySegment info = arena.allocate(DEVICE_INFO);
        setU32(info, DEVICE_INFO, "argsz", (int) DEVICE_INFO.byteSize());
        fails(Errno.EINVAL, () -> user.ioctl(cdev.fd(), VFIO_DEVICE_GET_INFO, info), "GET_INFO before bind");
        fails(Errno.EINVAL, () -> cdev.device().reset(), "RESET before bind");
        fails(Errno.EINVAL, () -> cdev.device().read(VFIO_PCI_BAR0_REGION_INDEX, 0, 8), "pread before bind");
        fails(Errno.EINVAL, () -> cdev.device().mmap(VFIO_PCI_BAR0_REGION_INDEX, 0, 4096, Prot.PROT_READ), "mmap");
        fails(Errno.EINVAL, () -> cdev.attach(1), "ATTACH before bind");

        Iommufd fd = Iommufd.open(user);
        int group = user.openGroup(iommuGroup.id());
        fails(Errno.EBUSY, () -> cdev.bind(fd), "the group file is open: the container front end uses it");
        user.close(group);
        fails(Errno.EBADF, () -> user.ioctl(cdev.fd(), VFIO_DEVICE_BIND_IOMMUFD, bindArg(99, 0)), "no fd 99");
        int efd = user.openEventfd();
        fails(Errno.EBADFD, () -> user.ioctl(cdev.fd(), VFIO_DEVICE_BIND_IOMMUFD, bindArg(efd, 0)), "an eventfd");
        fails(Errno.EINVAL, () -> user.ioctl(cdev.fd(), VFIO_DEVICE_BIND_IOMMUFD, bindArg(-1, 0)), "fd -1");
        fails(Errno.EINVAL, () -> user.ioctl(cdev.fd(), VFIO_DEVICE_BIND_IOMMUFD, bindArg(fd.fd(), 1)), "flags");
        int devId = cdev.bind(fd);
        assertEquals(1, devId, "the first object of the iommufd");
        fails(Errno.EINVAL, () -> cdev.bind(fd), "bound twice");
        fails(Errno.EBUSY, () -> user.openGroup(iommuGroup.id()), "the cdev blocks the group's file");
        assertEquals(9, cdev.device().info().numRegions(), "the device file works once bound");
        assertEquals(ID_VALUE, cdev.device().read(VFIO_PCI_BAR0_REGION_INDEX, REG_ID, 8), "BAR0 through the cdev");
        cdev.device().reset();

        fails(Errno.EBUSY, () -> fd.destroy(devId), "a device VFIO holds");
        fails(Errno.ENOENT, () -> fd.map(devId, 0, 4096, 0x10000, FIXED_RW), "a device ID is no IOAS");
        fails(Errno.EINVAL, () -> cdev.attach(devId), "a device is neither IOAS nor HWPT");
        fails(Errno.ENOENT, () -> cdev.attach(42), "no object 42");
        cdev.close();
        user.close(fd.fd());
        int again = user.openGroup(iommuGroup.id());
        user.close(again);
    }

    private MemorySegment bindArg(int iommufd, int flags) {
        MemorySegment m = arena.allocate(BIND_IOMMUFD);
        setU32(m, BIND_IOMMUFD, "argsz", (int) BIND_IOMMUFD.byteSize());
        setU32(m, BIND_IOMMUFD, "flags", flags);
        setU32(m, BIND_IOMMUFD, "iommufd", iommufd);
        return m;
    }

    @Test
    void attachNarrowsTheRangesAndTheEngineCopiesThroughTheIoas() {
        Iommufd fd = Iommufd.open(user);
        int ioas = fd.ioasAlloc();
        DeviceCdev cdev = DeviceCdev.open(user, ENGINE);
        cdev.bind(fd);
        assertEquals(IommuDomainType.BLOCKED, iommuGroup.domain().type(), "bound: owned and blocked");
        long ring = mm.mmapAnonymous(4096, Prot.PROT_READ | Prot.PROT_WRITE);
        long src = mm.mmapAnonymous(64 * 1024, Prot.PROT_READ | Prot.PROT_WRITE);
        long dst = mm.mmapAnonymous(64 * 1024, Prot.PROT_READ | Prot.PROT_WRITE);
        fd.map(ioas, ring, 4096, 0x1000_0000L, FIXED_RW);
        fd.map(ioas, src, 64 * 1024, 0x2000_0000L, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA);
        fd.map(ioas, dst, 64 * 1024, 0x3000_0000L, FIXED_RW);

        int hwpt = cdev.attach(ioas);
        assertNotEquals(ioas, hwpt, "an auto domain, its ID written back");
        assertEquals(IommuDomainType.UNMANAGED, iommuGroup.domain().type());
        assertEquals(List.of(new IovaRange(0, 0xfedf_ffffL), new IovaRange(0xfef0_0000L, (1L << 48) - 1)),
                fd.iovaRanges(ioas), "the MSI window and the aperture's end are reserved now");
        fails(Errno.EINVAL, () -> fd.map(ioas, dst, 4096, 0xfee0_0000L, FIXED_RW), "a reserved IOVA");
        fails(Errno.EINVAL, () -> fd.map(ioas, dst, 4096, 1L << 48, FIXED_RW), "past the aperture");
        fails(Errno.EADDRINUSE, () -> fd.allowIovas(ioas, List.of(new IovaRange(0xfe00_0000L, 0xfeff_ffffL))),
                "allowed over the reserved window");
        fails(Errno.EBUSY, () -> fd.destroy(ioas), "the auto domain holds the IOAS");
        fails(Errno.EBUSY, () -> fd.destroy(hwpt), "an attached HWPT");

        byte[] data = new byte[64 * 1024];
        new Random(13).nextBytes(data);
        mm.write(src, MemorySegment.ofArray(data));
        Bar.Mmio regs = engine.bar(0).orElseThrow().mmio();
        engine.setMaster(true);
        assertEquals(ST_OK, submit(regs, ring, 0x2000_0000L, 0x3000_0000L, data.length));
        byte[] back = new byte[data.length];
        mm.read(dst, MemorySegment.ofArray(back));
        assertArrayEquals(data, back, "the bytes went through the IOAS");
        assertEquals(ST_WRITE_FAULT, submit(regs, ring, 0x2000_0000L, 0x2000_0000L, 4096), "read-only IOVA");

        int other = fd.ioasAlloc();
        fd.map(other, dst, 4096, 0xfee0_0000L, FIXED_RW);
        fails(Errno.EADDRINUSE, () -> cdev.attach(other), "the new IOAS maps the device's reserved window");
        assertEquals(hwpt, cdev.attach(ioas), "still on the first: replacing with the same is nothing");
        fd.unmap(other, 0, -1L);
        fd.copy(other, ioas, 0x1000_0000L, 4096, 0x1000_0000L, FIXED_RW);
        fd.copy(other, ioas, 0x2000_0000L, 64 * 1024, 0x2000_0000L,
                IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA);
        int hwpt2 = cdev.attach(other);
        assertNotEquals(hwpt, hwpt2, "replaced by the other IOAS's auto domain");
        fails(Errno.ENOENT, () -> fd.destroy(hwpt), "the first auto domain went with its last device");
        fd.destroy(ioas);
        mm.write(dst, MemorySegment.ofArray(new byte[data.length]));
        assertEquals(ST_WRITE_FAULT, submit(regs, ring, 0x2000_0000L, 0x3000_0000L, 4096),
                "the other IOAS does not map the destination");
        mm.read(dst, MemorySegment.ofArray(back));
        assertArrayEquals(new byte[data.length], back, "no byte landed");

        cdev.detach();
        assertEquals(IommuDomainType.BLOCKED, iommuGroup.domain().type(), "detached: DMA blocked");
        assertEquals(List.of(new IovaRange(0, -1L)), fd.iovaRanges(other), "the ranges widen again");
        int faults = machine.iommu().faults().size();
        assertEquals(ST_PENDING, submit(regs, ring, 0x2000_0000L, 0x3000_0000L, 4096), "not even the ring is read");
        assertTrue(machine.iommu().faults().size() > faults && machine.iommu().faults().getLast().reason()
                .contains("blocks all DMA"), "the blocking domain faulted: " + machine.iommu().faults().getLast());
        regs.write(REG_CTRL, 8, CTRL_RESET);
        engine.setMaster(false);
        user.close(fd.fd());
        assertTrue(vfio.pinnedPages() > 0, "the bound device keeps the iommufd alive");
        cdev.close();
    }

    @Test
    void replacingThePageTableWhileTheEngineCopiesNeverFaults() throws Exception {
        Iommufd fd = Iommufd.open(user);
        int a = fd.ioasAlloc();
        int b = fd.ioasAlloc();
        DeviceCdev cdev = DeviceCdev.open(user, ENGINE);
        cdev.bind(fd);
        long ring = mm.mmapAnonymous(4096, Prot.PROT_READ | Prot.PROT_WRITE);
        long buf = mm.mmapAnonymous(2 * 4096, Prot.PROT_READ | Prot.PROT_WRITE);
        fd.map(a, ring, 4096, 0x1000_0000L, FIXED_RW);
        fd.map(a, buf, 2 * 4096, 0x2000_0000L, FIXED_RW);
        fd.copy(b, a, 0x1000_0000L, 4096, 0x1000_0000L, FIXED_RW);
        fd.copy(b, a, 0x2000_0000L, 2 * 4096, 0x2000_0000L, FIXED_RW);
        cdev.attach(a);
        Bar.Mmio regs = engine.bar(0).orElseThrow().mmio();
        engine.setMaster(true);
        int faultsBefore = machine.iommu().faults().size();
        AtomicBoolean stop = new AtomicBoolean();
        ExecutorService dma = Executors.newSingleThreadExecutor();
        try {
            Future<Integer> copies = dma.submit(() -> {
                int ok = 0;
                try (Arena t = Arena.ofConfined()) {
                    for (int i = 0; i < 400 && !stop.get(); i++) {
                        if (submit(t, regs, ring, 0x2000_0000L, 0x2000_1000L, 4096) == ST_OK) {
                            ok++;
                        }
                    }
                }
                return ok;
            });
            for (int i = 0; i < 100; i++) {
                cdev.attach(i % 2 == 0 ? b : a);
                assertEquals(IommuDomainType.UNMANAGED, iommuGroup.domain().type(), "never blocked in between");
            }
            int ok = copies.get(30, TimeUnit.SECONDS);
            assertEquals(400, ok, "every copy translated, through one page table or the other");
        } finally {
            stop.set(true);
            dma.shutdownNow();
            assertTrue(dma.awaitTermination(10, TimeUnit.SECONDS));
        }
        assertEquals(faultsBefore, machine.iommu().faults().size(), "no IOMMU fault during the replacements");
        regs.write(REG_CTRL, 8, CTRL_RESET);
        engine.setMaster(false);
        cdev.close();
        fd.close();
    }

    /**
     * Unplug under a bound cdev, as {@code vfio_unregister_group_dev} waits for the user after the REQ interrupt
     * (bounded here): the cdev is revoked (ENODEV), while the IOAS keeps its mappings and pins until the user unmaps
     * or closes, after which nothing is left.
     */
    @Test
    void unplugRevokesTheCdevAndTheIoasKeepsItsMappingsUntilClose() {
        vfio.setRequestTimeout(Duration.ofMillis(100));
        Iommufd fd = Iommufd.open(user);
        int ioas = fd.ioasAlloc();
        DeviceCdev cdev = DeviceCdev.open(user, ENGINE);
        cdev.bind(fd);
        cdev.attach(ioas);
        long buf = mm.mmapAnonymous(4 * 4096, Prot.PROT_READ | Prot.PROT_WRITE);
        fd.map(ioas, buf, 4 * 4096, 0x1000_0000L, FIXED_RW);
        long t0 = System.nanoTime();
        machine.hotUnplug(engine);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms < 1000, "unplug took " + ms + " ms");
        fails(Errno.ENODEV, () -> cdev.device().info(), "the device file is revoked");
        fails(Errno.ENODEV, () -> cdev.attach(ioas), "so is attaching");
        assertEquals(4, vfio.pinnedPages(), "the IOAS keeps its mappings");
        assertEquals(4 * 4096, fd.unmap(ioas, 0x1000_0000L, 4 * 4096), "until the user unmaps them");
        fd.map(ioas, buf, 4096, 0x2000_0000L, FIXED_RW);
        cdev.close();
        fd.close();
    }

    /**
     * {@code iommufd_ioas_map_file} (ioas.c) over {@code iopt_map_file_pages} and {@code memfd_pin_folios}
     * (mm/gup.c): a memfd's pages mapped into the IOAS, the engine's writes landing in the file.
     */
    @Test
    void mapFileOfAMemfdAndTheEngineWritesIntoTheFile() {
        MemFs fs = machine.mount("memfd", false);
        Inode file = fs.create("/buffer");
        file.truncate(4 * 4096);
        Iommufd fd = Iommufd.open(user);
        int ioas = fd.ioasAlloc();
        int memfd = user.openMemfd(file);
        int efd = user.openEventfd();
        fails(Errno.EBADF, () -> mapFile(fd, ioas, 99, 0, 4096, 0x4000_0000L, FIXED_RW), "fd 99 is not open");
        fails(Errno.EINVAL, () -> mapFile(fd, ioas, efd, 0, 4096, 0x4000_0000L, FIXED_RW), "an eventfd");
        fails(Errno.EINVAL, () -> mapFile(fd, ioas, memfd, 512, 4096, 0x4000_0000L, FIXED_RW), "start off a page");
        fails(Errno.EFAULT, () -> mapFile(fd, ioas, memfd, 0, 8 * 4096, 0x4000_0000L, FIXED_RW), "past the end");
        fails(Errno.ENOENT, () -> mapFile(fd, ioas + 1, memfd, 0, 4096, 0x4000_0000L, FIXED_RW), "no IOAS");
        fails(Errno.EOPNOTSUPP, () -> mapFile(fd, ioas, memfd, 0, 4096, 0x4000_0000L, FIXED_RW | 8), "flag");
        assertEquals(0, vfio.pinnedPages(), "no refusal pinned anything");
        assertEquals(0x4000_0000L, mapFile(fd, ioas, memfd, 4096, 2 * 4096, 0x4000_0000L, FIXED_RW));
        assertEquals(2, vfio.pinnedPages());
        assertEquals(2 * 4096, user.lockedBytes(), "charged as a user pin");

        DeviceCdev cdev = DeviceCdev.open(user, ENGINE);
        cdev.bind(fd);
        cdev.attach(ioas);
        long ring = mm.mmapAnonymous(4096, Prot.PROT_READ | Prot.PROT_WRITE);
        long src = mm.mmapAnonymous(2 * 4096, Prot.PROT_READ | Prot.PROT_WRITE);
        fd.map(ioas, ring, 4096, 0x1000_0000L, FIXED_RW);
        fd.map(ioas, src, 2 * 4096, 0x2000_0000L, FIXED_RW);
        byte[] data = new byte[2 * 4096];
        new Random(21).nextBytes(data);
        mm.write(src, MemorySegment.ofArray(data));
        Bar.Mmio regs = engine.bar(0).orElseThrow().mmio();
        engine.setMaster(true);
        assertEquals(ST_OK, submit(regs, ring, 0x2000_0000L, 0x4000_0000L, data.length));
        byte[] back = new byte[data.length];
        file.read(4096, MemorySegment.ofArray(back));
        assertArrayEquals(data, back, "the engine's writes are the file's bytes from page 1 on");
        file.truncate(0);
        assertEquals(2 + 3, vfio.pinnedPages(), "the pinned pages outlive the truncate");
        assertEquals(2 * 4096, fd.unmap(ioas, 0x4000_0000L, 2 * 4096));
        assertEquals(3, vfio.pinnedPages());
        regs.write(REG_CTRL, 8, CTRL_RESET);
        engine.setMaster(false);
        cdev.close();
        fd.close();
        fs.close();
    }

    private long mapFile(Iommufd fd, int ioas, int file, long start, long length, long iova, int flags) {
        MemorySegment m = arena.allocate(IOAS_MAP_FILE);
        setU32(m, IOAS_MAP_FILE, "size", (int) IOAS_MAP_FILE.byteSize());
        setU32(m, IOAS_MAP_FILE, "flags", flags);
        setU32(m, IOAS_MAP_FILE, "ioas_id", ioas);
        setU32(m, IOAS_MAP_FILE, "fd", file);
        setU64(m, IOAS_MAP_FILE, "start", start);
        setU64(m, IOAS_MAP_FILE, "length", length);
        setU64(m, IOAS_MAP_FILE, "iova", iova);
        user.ioctl(fd.fd(), IOMMU_IOAS_MAP_FILE, m);
        return m.get(VfioLayouts.U64, 32);
    }

    private int submit(Bar.Mmio regs, long ring, long srcIova, long dstIova, int length) {
        return submit(arena, regs, ring, srcIova, dstIova, length);
    }

    /** Resets the engine, writes descriptor 0 into the user's ring at IOVA 0x10000000, rings; the status. */
    private int submit(Arena a, Bar.Mmio regs, long ring, long srcIova, long dstIova, int length) {
        regs.write(REG_CTRL, 8, CTRL_RESET);
        regs.write(REG_RING_BASE, 8, 0x1000_0000L);
        regs.write(REG_RING_SIZE, 8, 8);
        regs.write(REG_CTRL, 8, CTRL_ENABLE);
        MemorySegment d = a.allocate(CopyEngineRegs.DESC_SIZE);
        d.set(ValueLayout.JAVA_LONG_UNALIGNED, DESC_SRC, srcIova);
        d.set(ValueLayout.JAVA_LONG_UNALIGNED, DESC_DST, dstIova);
        d.set(ValueLayout.JAVA_INT_UNALIGNED, DESC_LEN, length);
        mm.write(ring, d);
        regs.write(REG_RING_TAIL, 8, 1);
        MemorySegment back = a.allocate(DESC_SIZE);
        mm.read(ring, back);
        return back.get(ValueLayout.JAVA_INT_UNALIGNED, DESC_STATUS);
    }
}
