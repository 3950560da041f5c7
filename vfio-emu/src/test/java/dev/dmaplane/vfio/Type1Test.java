package dev.dmaplane.vfio;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.hw.copyengine.CopyEngineRegs;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.Random;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioTestMachine.*;
import static dev.dmaplane.vfio.VfioUapi.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The type 1 IOMMU, v2, as drivers/vfio/vfio_iommu_type1.c answers: {@code vfio_iommu_type1_map_dma} and
 * {@code vfio_dma_do_map} (no READ/WRITE, size 0, misalignment, wrap-around and IOVAs outside
 * {@code iommu->iova_list}: EINVAL; overlap: EEXIST; {@code dma_avail} exhausted: ENOSPC; {@code RLIMIT_MEMLOCK} in
 * {@code vfio_lock_acct}: ENOMEM), {@code vfio_dma_do_unmap} (a v2 split: EINVAL; the bytes unmapped written back
 * into {@code size}; {@code VFIO_DMA_UNMAP_FLAG_ALL}), {@code vfio_iommu_type1_get_info} with its capability chain
 * ({@code vfio_info_cap_add}/{@code vfio_info_cap_shift} in drivers/vfio/vfio_main.c), and drivers/vfio/container.c's
 * {@code VFIO_SET_IOMMU}. The copy engine DMAs through the IOVAs the user mapped, real bytes read back.
 */
class Type1Test {
    private static final long MIB = 1 << 20;
    private final Machine machine = VfioTestMachine.boot();
    private final DeviceCore core = machine.devices();
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("user");
    private final VfioUser user = vfio.open(mm, 64 * MIB);
    private final Arena arena = Arena.ofConfined();
    private final PciFunction engine;
    private final IommuGroup iommuGroup;
    private final long pinsBefore = machine.memory().pinsOutstanding();

    Type1Test() {
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
        assertEquals(0, vfio.pinnedPages(), "containers pin nothing after close");
        assertEquals(pinsBefore, machine.memory().pinsOutstanding(), "no page pinned after close");
        assertEquals(0, user.lockedBytes());
        assertTrue(machine.iommu().domains().stream().noneMatch(d -> d.type() == IommuDomainType.UNMANAGED),
                "the container's domain was freed");
        assertEquals(IommuDomainType.DMA, iommuGroup.domain().type(), "the group is the DMA API's again");
        mm.close();
        machine.close();
    }

    /** A group in a container with TYPE1v2 set. */
    private VfioContainer container() {
        VfioContainer c = VfioContainer.open(user);
        VfioGroup g = VfioGroup.open(user, iommuGroup.id());
        g.setContainer(c);
        c.setIommu(VFIO_TYPE1v2_IOMMU);
        return c;
    }

    private MemorySegment map(long vaddr, long iova, long size, int flags) {
        MemorySegment m = arena.allocate(DMA_MAP);
        setU32(m, DMA_MAP, "argsz", (int) DMA_MAP.byteSize());
        setU32(m, DMA_MAP, "flags", flags);
        setU64(m, DMA_MAP, "vaddr", vaddr);
        setU64(m, DMA_MAP, "iova", iova);
        setU64(m, DMA_MAP, "size", size);
        return m;
    }

    private MemorySegment unmap(long iova, long size, int flags) {
        MemorySegment m = arena.allocate(DMA_UNMAP);
        setU32(m, DMA_UNMAP, "argsz", (int) DMA_UNMAP.byteSize());
        setU32(m, DMA_UNMAP, "flags", flags);
        setU64(m, DMA_UNMAP, "iova", iova);
        setU64(m, DMA_UNMAP, "size", size);
        return m;
    }

    private static final int RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

    @Test
    void setIommuRefusals() {
        VfioContainer c = VfioContainer.open(user);
        fails(Errno.EINVAL, () -> c.setIommu(VFIO_TYPE1v2_IOMMU), "no group yet");
        VfioGroup g = VfioGroup.open(user, iommuGroup.id());
        g.setContainer(c);
        fails(Errno.ENODEV, () -> c.setIommu(VFIO_TYPE1_IOMMU), "v1 is not offered");
        fails(Errno.ENODEV, () -> c.setIommu(7), "sPAPR");
        c.setIommu(VFIO_TYPE1v2_IOMMU);
        assertEquals(IommuDomainType.UNMANAGED, iommuGroup.domain().type());
        fails(Errno.EINVAL, () -> c.setIommu(VFIO_TYPE1v2_IOMMU), "set twice");
        assertTrue(c.checkExtension(VFIO_DMA_CC_IOMMU), "asked of the driver once set");
        fails(Errno.ENOTTY, () -> user.ioctl(c.fd(), io(VFIO_TYPE, VFIO_BASE + 60), 0), "type1's default");
        int dev = g.deviceFd(ENGINE);
        fails(Errno.EBUSY, g::unsetContainer, "a device file is open");
        user.close(dev);
        g.unsetContainer();
        assertEquals(IommuDomainType.DMA, iommuGroup.domain().type());
        fails(Errno.EINVAL, () -> user.ioctl(c.fd(), VFIO_IOMMU_MAP_DMA, map(0, 0, 4096, RW)),
                "the last group took the IOMMU driver with it");
    }

    @Test
    void mapDmaErrnos() {
        VfioContainer c = container();
        long va = mm.mmapAnonymous(4 * MIB, Prot.PROT_READ | Prot.PROT_WRITE);
        long ro = mm.mmapAnonymous(MIB, Prot.PROT_READ);
        int fd = c.fd();
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(va, 0x10000, 4096, 0)), "no READ/WRITE");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(va, 0x10000, 0, RW)), "size 0");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(va, 0x10800, 4096, RW)), "iova");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(va + 8, 0x10000, 4096, RW)), "vaddr");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(va, 0x10000, 4097, RW)), "size");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(va, -4096, 8192, RW)), "IOVA wraps");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(-4096, 0x10000, 8192, RW)), "vaddr wraps");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(va, 0xfee0_0000L, 4096, RW)), "MSI window");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(va, 1L << 48, 4096, RW)), "past 48 bits");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(va, 0x10000, 4096, RW | 0x10)), "flag");
        MemorySegment shortArg = map(va, 0x10000, 4096, RW);
        setU32(shortArg, DMA_MAP, "argsz", 31);
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, shortArg), "argsz 31");
        fails(Errno.EFAULT, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(0x7000_0000L, 0x10000, 4096, RW)),
                "vaddr not mapped");
        fails(Errno.EFAULT, () -> user.ioctl(fd, VFIO_IOMMU_MAP_DMA, map(ro, 0x10000, 4096, RW)),
                "device-writable mapping of read-only memory");
        assertEquals(0, vfio.pinnedPages(), "no refusal pinned anything");
        assertEquals(0, user.lockedBytes());

        c.mapDma(va, 0x10000, 64 * 1024, RW);
        c.mapDma(ro, 0x40000, 4096, VFIO_DMA_MAP_FLAG_READ);
        assertEquals(17, vfio.pinnedPages());
        assertEquals(17 * 4096, user.lockedBytes());
        fails(Errno.EEXIST, () -> c.mapDma(va + MIB, 0x1f000, 8192, RW), "overlaps the first mapping's end");
        fails(Errno.EEXIST, () -> c.mapDma(va + MIB, 0x0f000, 8192, RW), "overlaps its start");
        fails(Errno.EEXIST, () -> c.mapDma(va + MIB, 0x40000, 4096, RW), "same IOVA");
        assertEquals(17, vfio.pinnedPages());
    }

    @Test
    void theEntryLimitIsEnospcAndMemlockEnomem() {
        vfio.setDmaEntryLimit(2);
        VfioContainer c = container();
        long va = mm.mmapAnonymous(4 * MIB, Prot.PROT_READ | Prot.PROT_WRITE);
        c.mapDma(va, 0x100000, 4096, RW);
        c.mapDma(va + 4096, 0x200000, 4096, RW);
        assertEquals(0, c.info().dmaAvail());
        fails(Errno.ENOSPC, () -> c.mapDma(va + 8192, 0x300000, 4096, RW));
        assertEquals(4096, c.unmapDma(0x100000, 4096, 0));
        c.mapDma(va + 8192, 0x300000, 4096, RW);

        user.setMemlockLimit(3 * 4096);
        c.unmapDma(0x300000, 4096, 0);
        assertTrue(fails(Errno.ENOMEM, () -> c.mapDma(va, 0x400000, 3 * 4096, RW), "1 + 3 pages over 3")
                .getMessage().contains("RLIMIT_MEMLOCK"));
        assertEquals(4096, user.lockedBytes(), "nothing charged by the refusal");
        assertEquals(1, vfio.pinnedPages(), "nothing pinned by it");
        c.mapDma(va, 0x400000, 2 * 4096, RW);
        assertEquals(3 * 4096, user.lockedBytes());
    }

    @Test
    void v2UnmapNeverSplitsAndReportsTheBytes() {
        VfioContainer c = container();
        long va = mm.mmapAnonymous(4 * MIB, Prot.PROT_READ | Prot.PROT_WRITE);
        c.mapDma(va, 0x100000, 0x10000, RW);
        c.mapDma(va + 0x10000, 0x110000, 0x4000, RW);
        c.mapDma(va + 0x20000, 0x200000, 0x2000, VFIO_DMA_MAP_FLAG_WRITE);
        int fd = c.fd();
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, unmap(0x101000, 0x1000, 0)), "starts inside");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, unmap(0x100000, 0x11000, 0)), "ends inside");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, unmap(0x100800, 0x1000, 0)), "iova");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, unmap(0x100000, 0x800, 0)), "size");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, unmap(0x100000, 0, 0)), "size 0");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, unmap(-4096, 8192, 0)), "wraps");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, unmap(0x100000, 0, VFIO_DMA_UNMAP_FLAG_ALL)),
                "ALL with an IOVA");
        fails(Errno.EINVAL, () -> user.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, unmap(0x100000, 0x1000, 0x8)), "flag");
        assertEquals(0x10000 + 0x4000 + 0x2000, vfio.pinnedPages() * 4096, "the refusals unmapped nothing");

        MemorySegment both = unmap(0xf0000, 0x30000, 0);
        assertEquals(0, user.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, both));
        assertEquals(0x14000, u64(both, DMA_UNMAP, "size"), "both whole mappings in the range, the hole counts 0");
        assertEquals(0, c.unmapDma(0x100000, 0x1000, 0), "nothing left there");
        c.mapDma(va, 0x300000, 0x1000, RW);
        MemorySegment all = unmap(0, 0, VFIO_DMA_UNMAP_FLAG_ALL);
        assertEquals(0, user.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, all));
        assertEquals(0x3000, u64(all, DMA_UNMAP, "size"));
        assertEquals(0, vfio.pinnedPages());
        assertEquals(0, user.lockedBytes());
    }

    @Test
    void getInfoHasTheCapabilityChain() {
        VfioContainer c = container();
        MemorySegment small = arena.allocate(IOMMU_TYPE1_INFO_MINSZ);
        small.set(U32, 0, (int) IOMMU_TYPE1_INFO_MINSZ);
        assertEquals(0, user.ioctl(c.fd(), VFIO_IOMMU_GET_INFO, small));
        int need = small.get(U32, 0);
        assertEquals(24 + 16 + 16 + 2 * 16, need, "argsz grows to the info, DMA_AVAIL (12, aligned to 16), IOVA_RANGE");
        assertEquals(VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, small.get(U32, 4));
        assertEquals(0x1000 | 0x200000, small.get(U64, 8));

        MemorySegment m = arena.allocate(need);
        m.set(U32, 0, need);
        user.ioctl(c.fd(), VFIO_IOMMU_GET_INFO, m);
        assertEquals(24, u32(m, IOMMU_TYPE1_INFO, "cap_offset"));
        assertEquals(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, m.get(U16, 24));
        assertEquals(1, m.get(U16, 26), "version");
        assertEquals(40, m.get(U32, 28), "next, from the start of the info");
        assertEquals(Vfio.DEFAULT_DMA_ENTRY_LIMIT, m.get(U32, 32));
        assertEquals(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, m.get(U16, 40));
        assertEquals(1, m.get(U16, 42));
        assertEquals(0, m.get(U32, 44), "the last capability");
        assertEquals(2, m.get(U32, 48));
        IommuInfo info = c.info();
        assertEquals(List.of(new IovaRange(0, 0xfedf_ffffL), new IovaRange(0xfef0_0000L, (1L << 48) - 1)),
                info.iovaRanges());
        fails(Errno.EINVAL, () -> user.ioctl(c.fd(), VFIO_IOMMU_GET_INFO, arena.allocate(16).fill((byte) 0)),
                "argsz 0");
    }

    /** The copy engine reads and writes user memory through the IOVAs mapped, and faults outside them. */
    @Test
    void theDeviceDmasThroughTheUsersMappings() {
        VfioContainer c = container();
        long ring = mm.mmapAnonymous(4096, Prot.PROT_READ | Prot.PROT_WRITE);
        long src = mm.mmapAnonymous(64 * 1024, Prot.PROT_READ | Prot.PROT_WRITE);
        long dst = mm.mmapAnonymous(64 * 1024, Prot.PROT_READ | Prot.PROT_WRITE);
        byte[] data = new byte[64 * 1024];
        new Random(13).nextBytes(data);
        mm.write(src, MemorySegment.ofArray(data));
        c.mapDma(ring, 0x1000_0000L, 4096, RW);
        c.mapDma(src, 0x2000_0000L, data.length, VFIO_DMA_MAP_FLAG_READ);
        c.mapDma(dst, 0x3000_0000L, data.length, VFIO_DMA_MAP_FLAG_WRITE);

        Bar.Mmio regs = engine.bar(0).orElseThrow().mmio();
        engine.setMaster(true);
        assertEquals(ST_OK, submit(regs, ring, 0x2000_0000L, 0x3000_0000L, data.length));
        byte[] back = new byte[data.length];
        mm.read(dst, MemorySegment.ofArray(back));
        assertArrayEquals(data, back, "the bytes went through the IOMMU");

        assertEquals(ST_WRITE_FAULT, submit(regs, ring, 0x2000_0000L, 0x2000_0000L, 4096), "read-only IOVA");
        assertEquals(data.length, c.unmapDma(0x3000_0000L, data.length, 0));
        mm.write(dst, MemorySegment.ofArray(new byte[data.length]));
        assertEquals(ST_WRITE_FAULT, submit(regs, ring, 0x2000_0000L, 0x3000_0000L, 4096), "unmapped now");
        mm.read(dst, MemorySegment.ofArray(back));
        assertArrayEquals(new byte[data.length], back, "no byte landed after the unmap");
        regs.write(REG_CTRL, 8, CTRL_RESET);
        engine.setMaster(false);
    }

    /**
     * Resets the engine (a fault halts it) with its ring at IOVA 0x10000000, writes descriptor 0 into the user's ring
     * and rings the doorbell; returns the status written back.
     */
    private int submit(Bar.Mmio regs, long ring, long srcIova, long dstIova, int length) {
        int n = 0;
        regs.write(REG_CTRL, 8, CTRL_RESET);
        regs.write(REG_RING_BASE, 8, 0x1000_0000L);
        regs.write(REG_RING_SIZE, 8, 8);
        regs.write(REG_CTRL, 8, CTRL_ENABLE);
        MemorySegment d = arena.allocate(CopyEngineRegs.DESC_SIZE);
        d.set(ValueLayout.JAVA_LONG_UNALIGNED, DESC_SRC, srcIova);
        d.set(ValueLayout.JAVA_LONG_UNALIGNED, DESC_DST, dstIova);
        d.set(ValueLayout.JAVA_INT_UNALIGNED, DESC_LEN, length);
        mm.write(ring + (long) n * DESC_SIZE, d);
        regs.write(REG_RING_TAIL, 8, n + 1);
        MemorySegment back = arena.allocate(DESC_SIZE);
        mm.read(ring + (long) n * DESC_SIZE, back);
        return back.get(ValueLayout.JAVA_INT_UNALIGNED, DESC_STATUS);
    }
}
