package dev.dmaplane.dmabuf;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dmabuf.heap.VramExporter.Target;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.Eventually;
import dev.dmaplane.testing.TestMachines;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The exporting driver goes away while importers still hold its buffers: its device is unbound (driver_unregister)
 * or surprise-removed. As vfio-pci's dma-buf cleanup does at device close, the driver's remove revokes every buffer
 * (dynamic importers get move_notify, in which a well-behaved one unmaps); what importers still hold afterwards is
 * what dma-debug reports at unbind ("pending DMA allocations"), here naming the importer and the buffer, and is torn
 * down so that no device keeps a way into memory the exporter gave back. The exporter is a small GPU driver
 * registered in the test; the importers are the two HCAs of the default machine.
 */
class ExporterStopTest {
    private static final int SIZE = 16 * 1024;

    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final DmaBufs bufs = DmaBufs.of(machine);
    private final P2pDma p2p = P2pDma.of(machine);
    private final PciFunction gpu = machine.pci().function("03:00.0");
    private final PciFunction hca = machine.pci().function("04:00.0");
    private final PciFunction hca2 = machine.pci().function("05:00.0");

    @AfterEach
    void close() {
        machine.close();
    }

    /** A GPU driver whose probe sets up the VRAM exporter and whose remove stops it. */
    private final class GpuDriver implements Driver {
        VramExporter exporter;
        int leaked = -1;

        @Override
        public String name() {
            return "test-gpu-exporter";
        }

        @Override
        public MatchTable matchTable() {
            return MatchTable.of(MatchEntry.Pci.of(0x1da0, 0x0001));
        }

        @Override
        public BoundDevice probe(Device device, MatchEntry match) {
            VramExporter ex = new VramExporter(bufs, p2p, (PciFunction) device, 2, VramExporter.Policy.MIGRATE_TO_HOST);
            exporter = ex;
            return () -> leaked = ex.stop("driver " + name() + " unbound from " + device.name());
        }
    }

    private GpuDriver bind() {
        GpuDriver d = new GpuDriver();
        machine.devices().registerDriver(d);
        assertNotNull(d.exporter, "probed the GPU");
        for (PciFunction f : List.of(hca, hca2)) {
            f.setMaster(true);
            f.dma().setDmaMask(-1L);
        }
        return d;
    }

    private static DmaBufMapping mapLocked(DmaBuf buf, Attachment a) {
        buf.resv().lock();
        try {
            return buf.map(a, DmaDirection.BIDIRECTIONAL);
        } finally {
            buf.resv().unlock();
        }
    }

    private static void fill(DmaBuf buf, int seed) {
        byte[] b = new byte[SIZE];
        Arrays.fill(b, (byte) seed);
        buf.resv().lock();
        try {
            buf.cpuWrite(0, MemorySegment.ofArray(b));
        } finally {
            buf.resv().unlock();
        }
    }

    private List<DmaDebugReport> leaks() {
        return machine.dmaDebug().reports(DmaDebugReport.Kind.LEAK_AT_UNBIND);
    }

    /**
     * Two importers: the HCA under the switch maps one buffer peer-to-peer and unmaps in its move_notify, as it
     * should; the far HCA, a static importer, keeps its (pinned) mapping of a buffer in system memory. Unbinding
     * the GPU driver reports exactly the second one and leaves nothing mapped.
     */
    @Test
    void unregisteringTheGpuDriverRevokesAndReportsTheMappingStillHeld() {
        GpuDriver driver = bind();
        VramExporter ex = driver.exporter;
        long frames = machine.memory().allocatedFrames();
        DmaBuf inVram = ex.allocate(SIZE);
        fill(inVram, 1);
        DmaBuf inHost = ex.allocate(SIZE);
        fill(inHost, 2);
        inHost.resv().lock();
        try {
            assertTrue(ex.migrate(inHost, Target.HOST, "test").await(Duration.ofSeconds(10)));
        } finally {
            inHost.resv().unlock();
        }

        List<DmaBufMapping> held = new ArrayList<>();
        List<Attachment> told = new ArrayList<>();
        Attachment polite = inVram.attach(hca, new Importer(true, att -> {
            told.add(att);
            for (DmaBufMapping m : att.mappings()) {
                att.dmabuf().unmap(m);
            }
        }));
        DmaBufMapping p2pMap = mapLocked(inVram, polite);
        assertEquals(1, p2pMap.segments().size());
        long bus = p2pMap.busAddress(0);
        assertEquals(gpu.bar(2).orElseThrow().address() + ex.vramOffset(inVram), bus, "peer-to-peer under the switch");

        Attachment leaky = inHost.attach(hca2, null);
        DmaBufMapping kept = inHost.mapUnlocked(leaky, DmaDirection.TO_DEVICE);
        held.add(kept);
        assertEquals(1, leaky.pinCount());
        assertEquals(2, machine.activeDmaMappings());
        long seq = machine.tracer().lastSeq();

        machine.devices().unregisterDriver(driver);

        assertEquals(1, driver.leaked, "the remove found one mapping still held");
        assertEquals(List.of(polite), told, "the dynamic importer was told (move_notify) and unmapped");
        assertEquals(DmaBufMapping.State.UNMAPPED, p2pMap.state());
        List<DmaDebugReport> leaks = leaks();
        assertEquals(1, leaks.size(), leaks.toString());
        DmaDebugReport leak = leaks.getFirst();
        assertEquals(hca2.name(), leak.device());
        assertTrue(leak.message().contains("static importer " + hca2.name()) && leak.message().contains("dma-buf " + inHost.ino())
                && leak.message().contains(ex.name()) && leak.message().contains("unbound"), leak.message());
        assertTrue(machine.tracer().since(seq).stream().anyMatch(e -> e.kind() == TraceKind.DMA_BUF
                && e.detail().contains("tearing it down")));
        assertEquals(DmaBufMapping.State.UNMAPPED, kept.state());
        assertEquals(0, leaky.pinCount(), "the pin the core took for the static importer went with the mapping");
        assertEquals(0, machine.activeDmaMappings(), "nothing is mapped for any device");
        assertEquals(frames, machine.memory().allocatedFrames(), "the system-memory backing was freed");
        assertEquals(16L << 30, ex.freeVram(), "and the VRAM");

        assertThrows(DmaFaultException.class, () -> hca2.dma().busMaster().readLong(kept.busAddress(0)));
        assertThrows(DmaFaultException.class, () -> hca.dma().busMaster().readLong(bus));
        assertEquals(DmaDebugReport.Kind.ACCESS_UNMAPPED, machine.dmaDebug().reports().getLast().kind(),
                "the HCA's old bus address is caught as an unmapped peer window");
        assertTrue(inVram.isRevoked() && inHost.isRevoked());
        assertTrue(bufs.bufinfo().contains("revoked"));
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> ex.allocate(SIZE)).errno());
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> mapLocked(inVram, polite)).errno());

        inHost.unmapUnlocked(kept);
        assertEquals(1, leaks().size(), "the importer's late unmap of the torn-down mapping is quiet");
        inHost.detach(leaky);
        inVram.detach(polite);
        inHost.put();
        inVram.put();
        // a moved buffer's last reference may be its move worker's, dropped just after the move fence signals
        Eventually.eventually(() -> bufs.list().isEmpty(), Duration.ofSeconds(10),
                "every dma-buf released: " + bufs.list());
    }

    /** A surprise removal of the GPU runs the same remove: both importers kept their mappings, both are reported. */
    @Test
    void hotUnplugOfTheGpuReportsEveryImporterThatKeptAMapping() {
        GpuDriver driver = bind();
        VramExporter ex = driver.exporter;
        DmaBuf shared = ex.allocate(SIZE);
        DmaBuf other = ex.allocate(SIZE);
        List<Attachment> told = new ArrayList<>();
        Attachment near = shared.attach(hca, new Importer(true, told::add));
        Attachment far = other.attach(hca2, new Importer(true, told::add));
        DmaBufMapping nearMap = mapLocked(shared, near);
        DmaBufMapping farMap = mapLocked(other, far);
        assertEquals(Target.VRAM, ex.placement(shared).orElseThrow());
        assertEquals(Target.HOST, ex.placement(other).orElseThrow(), "moved for the far HCA");
        assertTrue(other.resv().await(ResvUsage.KERNEL, Duration.ofSeconds(10)));
        told.clear();

        machine.hotUnplug(gpu);

        assertFalse(gpu.isPresent());
        assertEquals(2, driver.leaked);
        assertEquals(List.of(near, far), told, "each importer was told");
        List<DmaDebugReport> leaks = leaks();
        assertEquals(2, leaks.size(), leaks.toString());
        assertTrue(leaks.stream().anyMatch(r -> r.device().equals(hca.name()) && r.message().contains("dma-buf " + shared.ino())
                && r.message().contains("dynamic importer")), leaks.toString());
        assertTrue(leaks.stream().anyMatch(r -> r.device().equals(hca2.name()) && r.message().contains("dma-buf " + other.ino())),
                leaks.toString());
        assertEquals(0, machine.activeDmaMappings());
        assertThrows(DmaFaultException.class, () -> hca.dma().busMaster().readLong(nearMap.busAddress(0)));
        assertThrows(DmaFaultException.class, () -> hca2.dma().busMaster().readLong(farMap.busAddress(0)));

        for (var pair : List.of(List.of(shared, near, nearMap), List.of(other, far, farMap))) {
            DmaBuf b = (DmaBuf) pair.get(0);
            b.resv().lock();
            try {
                b.unmap((DmaBufMapping) pair.get(2));
            } finally {
                b.resv().unlock();
            }
            b.detach((Attachment) pair.get(1));
            b.put();
        }
        // a moved buffer's last reference may be its move worker's, dropped just after the move fence signals
        Eventually.eventually(() -> bufs.list().isEmpty(), Duration.ofSeconds(10),
                "every dma-buf released: " + bufs.list());
        assertEquals(2, leaks().size());
    }

    /** An importer that was unplugged first, keeping its mapping: the stop still reports it and finishes. */
    @Test
    void anImporterThatLeftItsBusDoesNotStopTheStop() {
        GpuDriver driver = bind();
        DmaBuf buf = driver.exporter.allocate(SIZE);
        Attachment far = buf.attach(hca2, null);
        DmaBufMapping kept = buf.mapUnlocked(far, DmaDirection.FROM_DEVICE);
        DmaBuf other = driver.exporter.allocate(SIZE);
        Attachment near = other.attach(hca, new Importer(true, x -> { }));
        mapLocked(other, near);
        machine.hotUnplug(hca2);
        assertEquals(1, leaks().size(), "the DMA layer reported the HCA's mapping when it went");

        machine.devices().unregisterDriver(driver);

        assertEquals(2, driver.leaked, "both buffers were stopped");
        assertEquals(DmaBufMapping.State.UNMAPPED, kept.state());
        assertEquals(0, far.pinCount());
        assertEquals(3, leaks().size());
        assertEquals(0, machine.activeDmaMappings());
        buf.detach(far);
        other.detach(near);
        buf.put();
        other.put();
    }
}
