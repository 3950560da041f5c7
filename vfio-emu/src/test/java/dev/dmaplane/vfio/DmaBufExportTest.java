package dev.dmaplane.vfio;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufMapping;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.Importer;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
import dev.dmaplane.pci.TopologyLoader;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioTestMachine.fails;
import static dev.dmaplane.vfio.VfioUapi.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code VFIO_DEVICE_FEATURE} as {@code vfio_ioctl_device_feature} and {@code vfio_check_feature}
 * (drivers/vfio/vfio_main.c) check it, and {@code VFIO_DEVICE_FEATURE_DMA_BUF} as drivers/vfio/pci/vfio_pci_dmabuf.c
 * exports BAR ranges ({@code vfio_pci_core_feature_dma_buf}, {@code validate_dmabuf_input},
 * {@code vfio_pci_core_fill_phys_vec}, {@code vfio_pci_dma_buf_attach}, {@code vfio_pci_dma_buf_move},
 * {@code vfio_pci_dma_buf_cleanup}) with the structures of include/uapi/linux/vfio.h
 * ({@code vfio_device_feature_dma_buf}, {@code vfio_region_dma_range}); revoked while Memory Space Enable is clear
 * ({@code vfio_basic_config_write} in drivers/vfio/pci/vfio_pci_config.c) or a reset runs (FLR, or
 * {@code vfio_pci_dev_set_hot_reset}), for good at the last
 * close or the device's removal. The exporter is the NVMe 06:00.0 with 1 MiB of memory in BAR2; the importer is
 * the RDMA HCA 05:00.0 behind another root port, so every path crosses the host bridge (p2pdma's whitelist decides).
 */
class DmaBufExportTest {
    private static final String NVME = "0000:06:00.0";
    private static final long PAGE = 4096;
    private static final String BAR0 = "                - { index: 0, size: 16KiB, kind: mmio }\n";

    private final List<Machine> machines = new ArrayList<>();
    private final Arena arena = Arena.ofConfined();
    private Machine machine;
    private Vfio vfio;
    private AddressSpace mm;
    private VfioUser user;
    private VfioDevice dev;
    private VfioGroup group;
    private PciFunction nvme;
    private PciFunction hca;

    /** Boots the default machine with BAR2 on the NVMe and {@code p2p} as the host bridge's whitelist entry. */
    private void boot(boolean p2p) {
        String text = TopologyLoader.defaultMachineText()
                .replace(BAR0, BAR0 + "                - { index: 2, size: 1MiB, kind: memory }\n");
        if (p2p) {
            text = text.replace("      p2pAllowed: false\n", "      p2pAllowed: true\n");
        }
        machine = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
        machines.add(machine);
        vfio = Vfio.of(machine);
        DeviceCore core = machine.devices();
        core.registerDriver(vfio.driver());
        nvme = machine.pci().function(NVME);
        core.setDriverOverride(nvme, "vfio-pci");
        core.reprobe(nvme);
        hca = machine.pci().function("0000:05:00.0");
        hca.setMaster(true);
        hca.dma().setDmaMask(-1L);
        mm = machine.newAddressSpace("user");
        user = vfio.open(mm, 64 << 20);
        VfioContainer c = VfioContainer.open(user);
        VfioGroup g = VfioGroup.open(user, machine.iommu().groupOf(nvme).orElseThrow().id());
        g.setContainer(c);
        c.setIommu(VFIO_TYPE1v2_IOMMU);
        group = g;
        dev = VfioDevice.open(g, NVME);
    }

    @AfterEach
    void close() {
        arena.close();
        if (user != null) {
            user.close();
        }
        if (machine != null) {
            assertEquals(0, machine.activeDmaMappings(hca), "the importer holds no mapping at the end");
        }
        machines.forEach(Machine::close);
    }

    /** A {@code vfio_device_feature} of {@code argsz} bytes with {@code flags}, followed by {@code data}. */
    private MemorySegment feature(int argsz, int flags, MemorySegment data) {
        MemorySegment s = arena.allocate(DEVICE_FEATURE.byteSize() + (data == null ? 0 : data.byteSize()), 8);
        s.set(U32, 0, argsz);
        s.set(U32, 4, flags);
        if (data != null) {
            s.asSlice(DEVICE_FEATURE.byteSize()).copyFrom(data);
        }
        return s;
    }

    /** A {@code vfio_device_feature_dma_buf} of region {@code index} with {@code ranges}, and {@code flags}. */
    private MemorySegment dmaBufData(int index, int flags, int nrRanges, long[]... ranges) {
        MemorySegment d = arena.allocate(FEATURE_DMA_BUF.byteSize() + ranges.length * REGION_DMA_RANGE.byteSize(), 8);
        setU32(d, FEATURE_DMA_BUF, "region_index", index);
        setU32(d, FEATURE_DMA_BUF, "flags", flags);
        setU32(d, FEATURE_DMA_BUF, "nr_ranges", nrRanges);
        for (int i = 0; i < ranges.length; i++) {
            d.set(U64, FEATURE_DMA_BUF.byteSize() + i * 16L, ranges[i][0]);
            d.set(U64, FEATURE_DMA_BUF.byteSize() + i * 16L + 8, ranges[i][1]);
        }
        return d;
    }

    private long export(int index, int flags, int nrRanges, long[]... ranges) {
        MemorySegment data = dmaBufData(index, flags, nrRanges, ranges);
        return user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE, feature((int) (8 + data.byteSize()),
                VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF, data));
    }

    @Test
    void featureHeaderFollowsVfioIoctlDeviceFeature() {
        boot(false);
        int get = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
        fails(Errno.EINVAL, () -> user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE, feature(7, get, null)), "argsz 7");
        fails(Errno.EFAULT, () -> user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE, arena.allocate(4)), "4 bytes");
        fails(Errno.EINVAL, () -> user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE, feature(8, get | 1 << 19, null)),
                "an unknown flag");
        fails(Errno.EINVAL, () -> user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE,
                feature(8, get | VFIO_DEVICE_FEATURE_SET, null)), "GET and SET without PROBE");
        fails(Errno.ENOTTY, () -> user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE, feature(8, VFIO_DEVICE_FEATURE_GET | 12,
                null)), "feature 12 is not vfio-pci's");
        fails(Errno.ENOTTY, () -> user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE, feature(8, VFIO_DEVICE_FEATURE_PROBE,
                null)), "PROBE of feature 0");
        assertEquals(0, user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE, feature(8, get | VFIO_DEVICE_FEATURE_PROBE, null)),
                "PROBE: DMA_BUF supports GET");
        assertEquals(0, user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE, feature(8,
                VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_DMA_BUF, null)), "PROBE of the feature alone");
        fails(Errno.EINVAL, () -> user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE, feature(8, VFIO_DEVICE_FEATURE_PROBE
                | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF, null)), "PROBE: no SET");
        fails(Errno.EINVAL, () -> user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE, feature(8, VFIO_DEVICE_FEATURE_DMA_BUF,
                null)), "neither GET nor SET");
        MemorySegment data = dmaBufData(2, 0, 1, new long[]{0, PAGE});
        fails(Errno.EINVAL, () -> user.ioctl(dev.fd(), VFIO_DEVICE_FEATURE, feature(8 + 15, get, data)),
                "argsz leaves 15 bytes for the 16-byte structure");
        assertTrue(DmaBufs.of(machine).list().isEmpty(), "nothing exported");
    }

    @Test
    void badRangesAreRefusedAndNothingIsExported() {
        boot(false);
        fails(Errno.EINVAL, () -> export(2, 0, 0), "no ranges");
        fails(Errno.EINVAL, () -> export(2, 1, 1, new long[]{0, PAGE}), "flags 1");
        fails(Errno.ENODEV, () -> export(VFIO_PCI_ROM_REGION_INDEX, 0, 1, new long[]{0, PAGE}), "the ROM");
        fails(Errno.ENODEV, () -> export(VFIO_PCI_CONFIG_REGION_INDEX, 0, 1, new long[]{0, PAGE}), "config");
        fails(Errno.ENODEV, () -> export(-1, 0, 1, new long[]{0, PAGE}), "index 0xffffffff");
        fails(Errno.EINVAL, () -> export(1, 0, 1, new long[]{0, PAGE}), "BAR1 is not implemented");
        fails(Errno.EINVAL, () -> export(2, 0, 1, new long[]{0, 0}), "length 0");
        fails(Errno.EINVAL, () -> export(2, 0, 1, new long[]{0x800, PAGE}), "unaligned offset");
        fails(Errno.EINVAL, () -> export(2, 0, 1, new long[]{0, 0x1800}), "unaligned length");
        fails(Errno.EINVAL, () -> export(2, 0, 2, new long[]{0, PAGE}, new long[]{0x100000, PAGE}),
                "the second range starts at the BAR's end");
        fails(Errno.EINVAL, () -> export(2, 0, 1, new long[]{0xff000, 2 * PAGE}), "ends past the BAR");
        fails(Errno.EINVAL, () -> export(2, 0, 2, new long[]{0, 1L << 63}, new long[]{0, 1L << 63}),
                "the lengths overflow");
        fails(Errno.EOVERFLOW, () -> export(2, 0, 1, new long[]{-PAGE, PAGE}), "the bus address overflows");
        fails(Errno.EINVAL, () -> export(2, 0, 1, new long[]{0, -PAGE}), "a length with DMA_IOVA_USE_SWIOTLB's bit");
        long lastPage = -nvme.bar(2).orElseThrow().address() - PAGE;
        fails(Errno.EOVERFLOW, () -> export(2, 0, 1, new long[]{lastPage, 2 * PAGE}),
                "the bus address is the last page, its end overflows");
        fails(Errno.EFAULT, () -> export(2, 0, 2, new long[]{0, PAGE}), "nr_ranges 2, one range given");
        assertTrue(DmaBufs.of(machine).list().isEmpty(), "nothing exported");
        assertEquals(3, user.openEventfd(), "no descriptor taken: container 0, group 1, device 2, then this one");
    }

    @Test
    void anImporterWithoutAPeerPathIsRefusedAtAttach() {
        boot(false);
        int fd = dev.exportDmaBuf(2, new long[]{0, PAGE});
        DmaBuf buf = user.dmaBuf(fd);
        try {
            assertEquals(PAGE, buf.size());
            fails(Errno.EOPNOTSUPP, () -> buf.attach(hca, null), "a static importer takes no MMIO");
            fails(Errno.EOPNOTSUPP, () -> buf.attach(hca, new Importer(false, a -> { })), "no peer2peer");
            fails(Errno.EOPNOTSUPP, () -> buf.attach(hca, new Importer(true, a -> { })),
                    "p2pdma: the host bridge is not whitelisted");
            assertTrue(buf.attachments().isEmpty());
        } finally {
            buf.put();
        }
    }

    /** A dynamic importer that records its move notifications. */
    private static final class Notified {
        final List<Attachment> moves = new ArrayList<>();
        final Importer importer = new Importer(true, moves::add);
    }

    private static DmaBufMapping map(DmaBuf buf, Attachment a) {
        buf.resv().lock();
        try {
            return buf.map(a, DmaDirection.BIDIRECTIONAL);
        } finally {
            buf.resv().unlock();
        }
    }

    private static void unmap(DmaBuf buf, DmaBufMapping m) {
        buf.resv().lock();
        try {
            buf.unmap(m);
        } finally {
            buf.resv().unlock();
        }
    }

    /** The HCA writes {@code data} through the mapping's segments, in order. */
    private void hcaWrite(DmaBufMapping m, byte[] data) {
        long off = 0;
        for (DmaSegment s : m.segments()) {
            hca.dma().busMaster().write(s.dmaAddress(), MemorySegment.ofArray(data).asSlice(off, s.length()));
            off += s.length();
        }
    }

    /** BAR2's bytes at {@code offset}, read by the user through the device file. */
    private byte[] bar2(long offset, int n) {
        MemorySegment s = arena.allocate(n);
        dev.read(2, offset, s);
        return s.toArray(ValueLayout.JAVA_BYTE);
    }

    private static byte[] random(long seed, int n) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    private void setMemoryEnable(boolean on) {
        int cmd = (int) dev.read(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2);
        dev.write(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2,
                on ? cmd | PciRegs.COMMAND_MEMORY : cmd & ~PciRegs.COMMAND_MEMORY);
    }

    @Test
    void theHcaDmasIntoTheExportedRangesAndIsCutOffWhileDecodingIsOff() {
        boot(true);
        int fd = dev.exportDmaBuf(2, new long[]{0x1000, 2 * PAGE}, new long[]{0x8000, PAGE});
        DmaBuf buf = user.dmaBuf(fd);
        Notified n = new Notified();
        Attachment a = buf.attach(hca, n.importer);
        try {
            assertEquals(3 * PAGE, buf.size());
            DmaBufMapping m = map(buf, a);
            assertEquals(2, m.segments().size(), "one segment per range");
            byte[] data = random(1, (int) (3 * PAGE));
            hcaWrite(m, data);
            assertArrayEquals(Arrays.copyOfRange(data, 0, 8192), bar2(0x1000, 8192), "first range");
            assertArrayEquals(Arrays.copyOfRange(data, 8192, 12288), bar2(0x8000, 4096), "second range");

            setMemoryEnable(false);
            assertEquals(List.of(a), n.moves, "move_notify on revoke");
            assertEquals(DmaBufMapping.State.STALE, m.state(), "the mapping is cut off");
            DmaSegment first = m.segments().getFirst();
            assertThrows(DmaFaultException.class, () -> hca.dma().busMaster().writeLong(first.dmaAddress(), 7L),
                    "the importer's DMA faults while the BAR does not decode");
            fails(Errno.ENODEV, () -> map(buf, a), "no map while revoked");
            unmap(buf, m);
            assertEquals(0, machine.activeDmaMappings(hca), "nothing mapped while revoked");

            setMemoryEnable(true);
            assertEquals(List.of(a, a), n.moves, "move_notify again when decoding is back");
            assertArrayEquals(Arrays.copyOfRange(data, 0, 8192), bar2(0x1000, 8192),
                    "the faulted write changed no byte");
            DmaBufMapping again = map(buf, a);
            byte[] more = random(2, (int) (3 * PAGE));
            hcaWrite(again, more);
            assertArrayEquals(Arrays.copyOfRange(more, 8192, 12288), bar2(0x8000, 4096));
            unmap(buf, again);
        } finally {
            buf.detach(a);
            buf.put();
        }
    }

    @Test
    void aResetRevokesForItsDurationOnly() {
        boot(true);
        DmaBuf buf = user.dmaBuf(dev.exportDmaBuf(2, new long[]{0, PAGE}));
        Notified n = new Notified();
        Attachment a = buf.attach(hca, n.importer);
        try {
            DmaBufMapping m = map(buf, a);
            dev.reset();
            assertEquals(List.of(a, a), n.moves, "revoked before the FLR, restored after it");
            assertEquals(DmaBufMapping.State.STALE, m.state());
            unmap(buf, m);
            DmaBufMapping again = map(buf, a);
            hcaWrite(again, random(3, (int) PAGE));
            assertArrayEquals(random(3, (int) PAGE), bar2(0, (int) PAGE));
            unmap(buf, again);
        } finally {
            buf.detach(a);
            buf.put();
        }
    }

    @Test
    void aHotResetRevokesForItsDurationOnly() {
        boot(true);
        DmaBuf buf = user.dmaBuf(dev.exportDmaBuf(2, new long[]{0, PAGE}));
        Notified n = new Notified();
        Attachment a = buf.attach(hca, n.importer);
        try {
            DmaBufMapping m = map(buf, a);
            MemorySegment arg = arena.allocate(PCI_HOT_RESET.byteSize() + 4, 4);
            setU32(arg, PCI_HOT_RESET, "argsz", (int) arg.byteSize());
            setU32(arg, PCI_HOT_RESET, "count", 1);
            arg.set(U32, PCI_HOT_RESET.byteSize(), group.fd());
            assertEquals(0, user.ioctl(dev.fd(), VFIO_DEVICE_PCI_HOT_RESET, arg));
            assertEquals(List.of(a, a), n.moves, "revoked before the bus reset, restored after it");
            assertEquals(DmaBufMapping.State.STALE, m.state());
            unmap(buf, m);
            DmaBufMapping again = map(buf, a);
            hcaWrite(again, random(4, (int) PAGE));
            assertArrayEquals(random(4, (int) PAGE), bar2(0, (int) PAGE));
            unmap(buf, again);
        } finally {
            buf.detach(a);
            buf.put();
        }
    }

    @Test
    void theLastCloseRevokesForGoodAndLeavesNothingMapped() {
        boot(true);
        DmaBuf buf = user.dmaBuf(dev.exportDmaBuf(2, new long[]{0, PAGE}));
        Notified n = new Notified();
        Attachment a = buf.attach(hca, n.importer);
        DmaBufMapping m = map(buf, a);
        dev.close();
        assertTrue(buf.isRevoked(), "revoked for good at the last close");
        assertEquals(List.of(a), n.moves);
        assertEquals(0, machine.activeDmaMappings(hca), "the mapping the importer kept was torn down");
        assertThrows(DmaFaultException.class, () -> hca.dma().busMaster().writeLong(m.segments().getFirst()
                .dmaAddress(), 7L));
        fails(Errno.ENODEV, () -> map(buf, a), "never again");
        unmap(buf, m);
        buf.detach(a);
        buf.put();
    }

    @Test
    void unplugRevokesEveryBufferForGood() {
        boot(true);
        vfio.setRequestTimeout(Duration.ofMillis(50));
        DmaBuf buf = user.dmaBuf(dev.exportDmaBuf(2, new long[]{0, 2 * PAGE}));
        Notified n = new Notified();
        Attachment a = buf.attach(hca, n.importer);
        map(buf, a);
        machine.hotUnplug(nvme);
        assertTrue(buf.isRevoked(), "revoked for good at the removal");
        assertEquals(List.of(a), n.moves);
        assertEquals(0, machine.activeDmaMappings(hca), "nothing the importer reached is left mapped");
        fails(Errno.ENODEV, () -> map(buf, a));
        fails(Errno.ENODEV, () -> dev.exportDmaBuf(2, new long[]{0, PAGE}), "the device file is revoked");
        buf.detach(a);
        buf.put();
    }
}
