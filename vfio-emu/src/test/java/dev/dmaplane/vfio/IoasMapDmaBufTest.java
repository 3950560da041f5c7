package dev.dmaplane.vfio;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.hw.copyengine.CopyEngineRegs;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuFault;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
import dev.dmaplane.vfio.iommufd.DeviceCdev;
import dev.dmaplane.vfio.iommufd.Iommufd;
import dev.dmaplane.vfio.iommufd.IommufdAccess;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static dev.dmaplane.testing.Eventually.eventually;
import static dev.dmaplane.vfio.VfioTestMachine.ENGINE;
import static dev.dmaplane.vfio.VfioTestMachine.fails;
import static dev.dmaplane.vfio.VfioUapi.VFIO_PCI_CONFIG_REGION_INDEX;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code IOMMU_IOAS_MAP_FILE} of vfio-pci's own BAR dma-buf, as recent kernels do it: {@code iopt_map_file_pages}
 * finding a dma-buf, {@code iopt_map_dmabuf} attaching with {@code iopt_dmabuf_attach_revoke_ops} and taking the
 * range from {@code vfio_pci_dma_buf_iommufd_map} (drivers/iommu/iommufd/pages.c, drivers/vfio/pci/vfio_pci_dmabuf.c,
 * {@code struct iommu_ioas_map_file} in include/uapi/linux/iommufd.h): other exporters {@code EOPNOTSUPP}, a revoked
 * buffer {@code ENODEV}; a revoke while mapped ({@code vfio_pci_dma_buf_move} when Memory Space Enable is cleared,
 * {@code iopt_revoke_notify}) unmaps the IOVA range from the domain and nothing maps it again, while the area stays
 * until the user's {@code IOMMU_IOAS_UNMAP}. The copy engine DMAs into its own BAR2 through the IOAS; bytes read
 * back from the BAR.
 */
class IoasMapDmaBufTest {
    private static final long MIB = 1 << 20;
    private static final int SIZE = 64 * 1024;
    private static final long BAR_IOVA = 0x5000_0000L;
    private static final int RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    private static final int FIXED_RW = RW | IOMMU_IOAS_MAP_FIXED_IOVA;
    private final Machine machine = VfioTestMachine.boot();
    private final DeviceCore core = machine.devices();
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("user");
    private final VfioUser user = vfio.open(mm, 64 * MIB);
    private final Arena arena = Arena.ofConfined();
    private final PciFunction engine;

    IoasMapDmaBufTest() {
        core.registerDriver(vfio.driver());
        engine = (PciFunction) core.findDevice(ENGINE).orElseThrow();
        core.setDriverOverride(engine, "vfio-pci");
        core.reprobe(engine);
    }

    @AfterEach
    void close() {
        arena.close();
        user.close();
        assertEquals(0, vfio.pinnedPages(), "nothing mapped after close");
        assertTrue(machine.iommu().domains().stream().noneMatch(d -> d.type() == IommuDomainType.UNMANAGED),
                "every HWPT's domain was freed");
        mm.close();
        machine.close();
    }

    /** The engine bound to a new iommufd and attached to a new IOAS, its BAR2 decoding and exported as a dma-buf. */
    private record Bar2(Iommufd fd, int ioas, DeviceCdev cdev, VfioDevice dev, int dmabuf) {
    }

    private Bar2 exportBar2() {
        Iommufd fd = Iommufd.open(user);
        int ioas = fd.ioasAlloc();
        DeviceCdev cdev = DeviceCdev.open(user, ENGINE);
        cdev.bind(fd);
        cdev.attach(ioas);
        VfioDevice dev = cdev.device();
        memoryDecode(dev, true);
        return new Bar2(fd, ioas, cdev, dev, dev.exportDmaBuf(2, new long[]{0, SIZE}));
    }

    private static void memoryDecode(VfioDevice dev, boolean on) {
        int cmd = (int) dev.read(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2);
        dev.write(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2,
                on ? cmd | PciRegs.COMMAND_MEMORY : cmd & ~PciRegs.COMMAND_MEMORY);
    }

    private byte[] bar2() {
        byte[] b = new byte[SIZE];
        engine.bar(2).orElseThrow().memory().read(0, MemorySegment.ofArray(b));
        return b;
    }

    /**
     * A dma-buf whose exporter still clears or moves it (a pending {@code DMA_RESV_USAGE_KERNEL} fence) is mapped into
     * the IOAS only once that fence signals: importers always wait for KERNEL fences before they access the buffer
     * ({@code include/linux/dma-resv.h}), or the device's DMA could land before the clear and be wiped by it.
     */
    @Test
    void aMapOfADmaBufWaitsForItsKernelFences() throws Exception {
        Bar2 b = exportBar2();
        Iommufd fd = b.fd();
        int ioas = b.ioas();
        int dmabuf = b.dmabuf();
        DmaBuf buf = user.dmaBuf(dmabuf);
        Fence clear = FenceContext.allocate("exporter", "clear").createFence();
        buf.resv().lock();
        try {
            buf.resv().reserveFences(1);
            buf.resv().addFence(clear, ResvUsage.KERNEL);
        } finally {
            buf.resv().unlock();
        }
        ExecutorService mapper = Executors.newSingleThreadExecutor(r -> new Thread(r, "map-file"));
        try {
            AtomicReference<Thread> t = new AtomicReference<>();
            Future<Long> mapped = mapper.submit(() -> {
                t.set(Thread.currentThread());
                return fd.mapFile(ioas, dmabuf, 0, SIZE, BAR_IOVA, FIXED_RW);
            });
            eventually(() -> mapped.isDone() || t.get() != null && t.get().getState() == Thread.State.TIMED_WAITING,
                    Duration.ofSeconds(10), "the map returned or waits");
            assertFalse(mapped.isDone(), "IOMMU_IOAS_MAP_FILE returned with the KERNEL fence pending");
            clear.signal();
            assertEquals(BAR_IOVA, mapped.get(10, TimeUnit.SECONDS), "mapped once the fence signalled");
            assertEquals(SIZE, fd.unmap(ioas, BAR_IOVA, SIZE));
        } finally {
            mapper.shutdownNow();
            assertTrue(mapper.awaitTermination(10, TimeUnit.SECONDS));
            buf.put();
        }
    }

    @Test
    void theEngineWritesItsBarThroughTheIoasUntilARevokeUnmapsTheRange() {
        Bar2 b = exportBar2();
        Iommufd fd = b.fd();
        int ioas = b.ioas();
        VfioDevice dev = b.dev();
        int dmabuf = b.dmabuf();
        long ring = mm.mmapAnonymous(4096, Prot.PROT_READ | Prot.PROT_WRITE);
        long src = mm.mmapAnonymous(SIZE, Prot.PROT_READ | Prot.PROT_WRITE);
        fd.map(ioas, ring, 4096, 0x1000_0000L, FIXED_RW);
        fd.map(ioas, src, SIZE, 0x2000_0000L, FIXED_RW);
        fails(Errno.EINVAL, () -> fd.mapFile(ioas, dmabuf, 4096, SIZE, BAR_IOVA, FIXED_RW), "past the buffer");
        assertEquals(BAR_IOVA, fd.mapFile(ioas, dmabuf, 0, SIZE, BAR_IOVA, FIXED_RW));
        DmaBuf buf = user.dmaBuf(dmabuf);
        assertEquals(1, buf.attachments().size(), "iommufd's global device is attached");

        byte[] data = new byte[SIZE];
        new Random(31).nextBytes(data);
        mm.write(src, MemorySegment.ofArray(data));
        Bar.Mmio regs = engine.bar(0).orElseThrow().mmio();
        engine.setMaster(true);
        assertEquals(ST_OK, submit(regs, ring, 0x2000_0000L, BAR_IOVA, SIZE));
        assertArrayEquals(data, bar2(), "the engine's writes landed in BAR2 through the IOAS");

        memoryDecode(dev, false);
        memoryDecode(dev, true);
        byte[] other = new byte[SIZE];
        new Random(32).nextBytes(other);
        mm.write(src, MemorySegment.ofArray(other));
        int faults = machine.iommu().faults().size();
        assertEquals(ST_WRITE_FAULT, submit(regs, ring, 0x2000_0000L, BAR_IOVA, 4096),
                "the revoke unmapped the range, and decoding back maps nothing again");
        IommuFault f = machine.iommu().faults().getLast();
        assertTrue(machine.iommu().faults().size() > faults && f.iova() == BAR_IOVA && f.write(), "fault: " + f);
        assertArrayEquals(data, bar2(), "no byte written");
        fails(Errno.EEXIST, () -> fd.map(ioas, src, 4096, BAR_IOVA, FIXED_RW), "the area stays until unmapped");
        assertEquals(SIZE, fd.unmap(ioas, BAR_IOVA, SIZE), "the user's unmap of the revoked area");
        assertTrue(buf.attachments().isEmpty(), "and iommufd detached");

        memoryDecode(dev, false);
        fails(Errno.ENODEV, () -> fd.mapFile(ioas, dmabuf, 0, SIZE, BAR_IOVA, FIXED_RW), "revoked now");
        memoryDecode(dev, true);
        assertEquals(BAR_IOVA, fd.mapFile(ioas, dmabuf, 0, SIZE, BAR_IOVA, FIXED_RW), "restored, mapped anew");
        buf.put();
        user.close(dmabuf);
        assertEquals(ST_OK, submit(regs, ring, 0x2000_0000L, BAR_IOVA, SIZE), "the IOAS holds its own reference");
        assertArrayEquals(other, bar2());

        DmaBuf heap = new SystemHeap(DmaBufs.of(machine)).allocate(SIZE);
        int heapFd = user.installDmaBuf(heap);
        heap.put();
        fails(Errno.EOPNOTSUPP, () -> fd.mapFile(ioas, heapFd, 0, SIZE, 0x6000_0000L, FIXED_RW),
                "a heap gives no physical ranges");
        assertTrue(heap.attachments().isEmpty(), "the refused map left no attachment");
        user.close(heapFd);
        assertTrue(heap.isReleased(), "nor a reference");

        regs.write(REG_CTRL, 8, CTRL_RESET);
        engine.setMaster(false);
        b.cdev().close();
        fd.close();
    }

    /** Resets the engine, writes descriptor 0 into the user's ring at IOVA 0x10000000, rings; the status. */
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

    /**
     * An in-kernel access cannot pin or copy through a dma-buf's area (drivers/iommu/iommufd/pages.c:
     * {@code iopt_area_add_access} and {@code iopt_pages_rw_access} refuse {@code iopt_is_dmabuf} pages with EINVAL):
     * the memory is the exporter's, with no {@code struct page}.
     */
    @Test
    void anAccessCannotPinOrCopyThroughADmaBufArea() {
        Bar2 b = exportBar2();
        Iommufd fd = b.fd();
        int ioas = b.ioas();
        VfioDevice dev = b.dev();
        int dmabuf = b.dmabuf();
        assertEquals(BAR_IOVA, fd.mapFile(ioas, dmabuf, 0, SIZE, BAR_IOVA, FIXED_RW));
        IommufdAccess access = user.iommufdAccess(fd.fd(), (iova, length) -> { });
        access.attach(ioas);
        fails(Errno.EINVAL, () -> access.pinPages(BAR_IOVA, 4096, IommufdAccess.RW_READ), "pin of a dma-buf's page");
        fails(Errno.EINVAL, () -> access.rw(BAR_IOVA, MemorySegment.ofArray(new byte[8]), IommufdAccess.RW_WRITE),
                "a copy into it");
        access.destroy();
        assertEquals(SIZE, fd.unmap(ioas, BAR_IOVA, SIZE), "no pin held the area");
    }
}
