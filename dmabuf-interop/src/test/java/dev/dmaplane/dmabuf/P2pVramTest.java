package dev.dmaplane.dmabuf;

import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.FaultReason;
import dev.dmaplane.dmabuf.heap.P2pExporter;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.dmabuf.heap.VramExporter.Policy;
import dev.dmaplane.dmabuf.heap.VramExporter.Target;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MachineFiles;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import static dev.dmaplane.dmabuf.ResvLocked.locked;
import static dev.dmaplane.dmabuf.ResvLocked.lockedGet;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The VRAM exporter deciding peer-to-peer as amdgpu_dma_buf.c does (pci_p2pdma_distance at attach clears
 * attach->peer2peer; a map places the buffer in VRAM only for a peer2peer attachment, else in system memory; a pin
 * stays in VRAM only while every attachment can follow), with the map types of drivers/pci/p2pdma.c as
 * drivers/dma-buf/dma-buf-mapping.c turns them into addresses (BUS_ADDR: the bus address, no IOVA;
 * THRU_HOST_BRIDGE: an IOVA in the importer's domain). The default machine: the GPU 03:00.0 and the HCA 04:00.0
 * under one switch without ACS, the HCA 05:00.0 behind another root port, host bridge not whitelisted. Every byte
 * is moved by the importer's device and checked through the GPU's BAR or the exporter's CPU view.
 */
class P2pVramTest {
    private static final int SIZE = 64 * 1024;

    private final MachineFiles files = new MachineFiles();

    @AfterEach
    void close() {
        files.close();
    }

    /** One booted machine with the dma-buf and p2pdma cores, the GPU's VRAM and both HCAs set up as their probes would. */
    private static final class Rig {
        final Machine m;
        final DmaBufs bufs;
        final P2pDma p2p;
        final PciFunction gpu;
        final Bar vram;
        final PciFunction hca;
        final PciFunction hca2;

        Rig(Machine m) {
            this.m = m;
            this.bufs = DmaBufs.of(m);
            this.p2p = P2pDma.of(m);
            this.gpu = m.pci().function("03:00.0");
            this.vram = gpu.bar(2).orElseThrow();
            this.hca = m.pci().function("04:00.0");
            this.hca2 = m.pci().function("05:00.0");
            for (PciFunction f : List.of(hca, hca2)) {
                f.setMaster(true);
                f.dma().setDmaMask(-1L);
            }
        }

        VramExporter exporter(Policy policy) {
            return new VramExporter(bufs, p2p, gpu, 2, policy);
        }

        /** A buffer in VRAM holding {@code pattern(seed)}. */
        DmaBuf filled(VramExporter ex, int seed) {
            DmaBuf buf = ex.allocate(SIZE);
            locked(buf, () -> buf.cpuWrite(0, MemorySegment.ofArray(pattern(seed))));
            return buf;
        }

        long busAddressOf(VramExporter ex, DmaBuf buf) {
            return vram.address() + ex.vramOffset(buf);
        }

        byte[] inVram(long offset, int n) {
            byte[] out = new byte[n];
            vram.memory().read(offset, MemorySegment.ofArray(out));
            return out;
        }

        boolean traced(TraceKind kind, long since, String... words) {
            return m.tracer().since(since).stream().anyMatch(e -> e.kind() == kind
                    && List.of(words).stream().allMatch(w -> e.detail().contains(w)));
        }
    }

    private Rig boot() {
        return new Rig(files.boot());
    }

    private static byte[] pattern(int seed) {
        byte[] b = new byte[SIZE];
        for (int i = 0; i < SIZE; i++) {
            b[i] = (byte) (i * 29 + seed);
        }
        return b;
    }

    private static Errno errno(Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    private static DmaBufMapping map(DmaBuf buf, Attachment a) {
        DmaBufMapping m = lockedGet(buf, () -> buf.map(a, DmaDirection.BIDIRECTIONAL));
        assertTrue(buf.resv().await(ResvUsage.KERNEL, Duration.ofSeconds(10)), "a dynamic importer waits for the move");
        return m;
    }

    private static byte[] deviceRead(PciFunction dev, DmaBufMapping m) {
        byte[] out = new byte[(int) m.length()];
        long off = 0;
        for (DmaSegment s : m.segments()) {
            dev.dma().busMaster().read(s.dmaAddress(), MemorySegment.ofArray(out).asSlice(off, s.length()));
            off += s.length();
        }
        return out;
    }

    private static byte[] cpuRead(DmaBuf buf) {
        byte[] out = new byte[SIZE];
        locked(buf, () -> buf.cpuRead(0, MemorySegment.ofArray(out)));
        return out;
    }

    private static boolean inBar(Bar bar, long addr) {
        return addr >= bar.address() && addr < bar.address() + bar.size();
    }

    /**
     * The device behind a buffer's {@code exp_name}: for a VRAM export the GPU, as {@code drm_gem_prime_export}'s GEM
     * object knows its {@code drm_device}; a system heap buffer ({@code drivers/dma-buf/heaps/system_heap.c}) has none.
     */
    @Test
    void theExportingFunctionOfAVramBufferIsTheGpuAndAHeapBufferHasNone() {
        Rig r = boot();
        VramExporter ex = r.exporter(Policy.MIGRATE_TO_HOST);
        DmaBuf buf = ex.allocate(SIZE);
        DmaBuf heap = new SystemHeap(r.bufs).allocate(4096);
        assertEquals(Optional.of(r.gpu), P2pExporter.exportingFunction(buf));
        assertEquals(Optional.empty(), P2pExporter.exportingFunction(heap));
        assertEquals(Errno.EINVAL, errno(() -> P2pExporter.exportingFunction(null)));
        heap.put();
        buf.put();
    }

    @Test
    void theHcaUnderTheSwitchReadsAndWritesVramByBusAddressAndTheBufferStaysThere() {
        Rig r = boot();
        VramExporter ex = r.exporter(Policy.MIGRATE_TO_HOST);
        DmaBuf buf = r.filled(ex, 1);
        List<Attachment> moved = new ArrayList<>();
        long seq = r.m.tracer().lastSeq();

        Attachment a = buf.attach(r.hca, new Importer(true, moved::add));
        assertTrue(a.peer2peer(), "same switch, no ACS redirect: peer-to-peer stays allowed");
        DmaBufMapping m = map(buf, a);
        long bus = r.busAddressOf(ex, buf);
        assertEquals(List.of(new DmaSegment(bus, SIZE)), m.segments(), "the BAR's bus address itself");
        assertEquals(Target.VRAM, ex.placement(buf).orElseThrow(), "no migration");
        assertEquals(List.of(), moved);
        assertEquals(1, r.m.activeDmaMappings(r.hca), "a peer window, tracked for dma-debug");
        assertEquals(0, r.m.iommu().groupOf(r.hca).orElseThrow().domain().mappedBytes(), "nothing in the IOMMU");

        assertArrayEquals(pattern(1), deviceRead(r.hca, m), "the HCA reads VRAM through the switch");
        byte[] news = pattern(2);
        r.hca.dma().busMaster().write(m.busAddress(4096), MemorySegment.ofArray(news).asSlice(0, 8192));
        byte[] expect = pattern(1);
        System.arraycopy(news, 0, expect, 4096, 8192);
        assertArrayEquals(expect, cpuRead(buf), "the HCA's write landed in the buffer");
        assertArrayEquals(expect, r.inVram(ex.vramOffset(buf), SIZE), "in VRAM");
        assertEquals(List.of(), r.m.iommu().faults(), "the IOMMU never saw a request");
        assertTrue(r.traced(TraceKind.P2PDMA, seq, "BUS_ADDR", "03:00.0"), "p2pdma's verdict is traced");
        assertTrue(r.traced(TraceKind.DMA_BUF, seq, "mapped BUS_ADDR", "no IOMMU"), "and the exporter's choice");
        assertTrue(r.bufs.bufinfo().contains(r.hca.name() + " (dynamic, p2p"), r.bufs.bufinfo());

        locked(buf, () -> buf.unmap(m));
        assertEquals(0, r.m.activeDmaMappings());
        buf.detach(a);
        buf.put();
        assertEquals(16L << 30, ex.freeVram());
    }

    @Test
    void acrossTheRootComplexMigrateMovesTheBytesToHostMemoryAndTheHcaReadsThemByIova() {
        Rig r = boot();
        VramExporter ex = r.exporter(Policy.MIGRATE_TO_HOST);
        DmaBuf buf = r.filled(ex, 3);
        long seq = r.m.tracer().lastSeq();

        Attachment a = buf.attach(r.hca2, new Importer(true, x -> { }));
        assertFalse(a.peer2peer(), "the exporter cleared it: p2pdma says no");
        assertTrue(r.traced(TraceKind.DMA_BUF, seq, "without peer-to-peer", "not on the P2PDMA whitelist", "MIGRATE_TO_HOST"));
        assertEquals(Target.VRAM, ex.placement(buf).orElseThrow(), "amdgpu moves at map time, not at attach");

        DmaBufMapping m = map(buf, a);
        assertEquals(Target.HOST, ex.placement(buf).orElseThrow());
        assertTrue(r.traced(TraceKind.DMA_BUF, seq, "policy MIGRATE_TO_HOST moves it to system memory for map"));
        assertFalse(inBar(r.vram, m.busAddress(0)), "an IOVA, not a bus address");
        assertTrue(r.m.iommu().groupOf(r.hca2).orElseThrow().domain().mappedBytes() >= SIZE, "mapped in the HCA's IOMMU domain");
        assertArrayEquals(pattern(3), deviceRead(r.hca2, m), "the bytes survived the move");

        locked(buf, () -> buf.unmap(m));
        buf.detach(a);
        buf.put();
        assertEquals(0, r.m.activeDmaMappings());
    }

    @Test
    void acrossTheRootComplexTheRefusePolicyRefusesWhileTheHcaUnderTheSwitchIsServed() {
        Rig r = boot();
        VramExporter ex = r.exporter(Policy.REFUSE);
        DmaBuf buf = r.filled(ex, 4);
        long seq = r.m.tracer().lastSeq();

        ErrnoException e = assertThrows(ErrnoException.class, () -> buf.attach(r.hca2, new Importer(true, x -> { })));
        assertEquals(Errno.EBUSY, e.errno(), "dma_buf_dynamic_attach's errno for storage the device cannot reach");
        assertTrue(e.getMessage().contains("P2PDMA whitelist"), e.getMessage());
        assertTrue(r.traced(TraceKind.DMA_BUF, seq, "refuses attach", "policy REFUSE"));
        assertTrue(buf.attachments().isEmpty());

        Attachment near = buf.attach(r.hca, new Importer(true, x -> { }));
        DmaBufMapping m = map(buf, near);
        assertTrue(inBar(r.vram, m.busAddress(0)));
        assertArrayEquals(pattern(4), deviceRead(r.hca, m));
        assertEquals(Target.VRAM, ex.placement(buf).orElseThrow());
        locked(buf, () -> buf.unmap(m));
        buf.detach(near);
        buf.put();
    }

    @Test
    void anImporterWithoutPeerToPeerUnderTheSwitchMigratesOrIsRefused() {
        Rig r = boot();
        VramExporter ex = r.exporter(Policy.MIGRATE_TO_HOST);
        DmaBuf dyn = r.filled(ex, 5);
        Attachment a = dyn.attach(r.hca, new Importer(false, x -> { }));
        assertFalse(a.peer2peer());
        DmaBufMapping m = map(dyn, a);
        assertEquals(Target.HOST, ex.placement(dyn).orElseThrow(), "allow_peer2peer=false: the buffer moves although the switch would carry it");
        assertFalse(inBar(r.vram, m.busAddress(0)));
        assertArrayEquals(pattern(5), deviceRead(r.hca, m), "read through the HCA's IOVA");
        locked(dyn, () -> dyn.unmap(m));
        dyn.detach(a);

        DmaBuf stat = r.filled(ex, 6);
        Attachment s = stat.attach(r.hca, null);
        DmaBufMapping sm = stat.mapUnlocked(s, DmaDirection.TO_DEVICE);
        assertEquals(Target.HOST, ex.placement(stat).orElseThrow(), "the pin of a static importer placed it in system memory");
        assertEquals(1, s.pinCount());
        assertArrayEquals(pattern(6), deviceRead(r.hca, sm));
        stat.unmapUnlocked(sm);
        stat.detach(s);

        VramExporter strict = r.exporter(Policy.REFUSE);
        DmaBuf held = r.filled(strict, 7);
        assertEquals(Errno.EOPNOTSUPP, errno(() -> held.attach(r.hca, new Importer(false, x -> { }))),
                "an importer that takes no peer-to-peer addresses, as vfio-pci answers it");
        assertEquals(Errno.EOPNOTSUPP, errno(() -> held.attach(r.hca, null)));
        assertEquals(Target.VRAM, strict.placement(held).orElseThrow());
        dyn.put();
        stat.put();
        held.put();
        assertEquals(0, r.m.activeDmaMappings());
    }

    /** amdgpu_dma_buf_pin: pinned in VRAM for peers that reach it; an importer that cannot follow then gets EBUSY. */
    @Test
    void aBufferPinnedInVramCannotMoveForAnImporterWithoutPeerToPeer() {
        Rig r = boot();
        VramExporter ex = r.exporter(Policy.MIGRATE_TO_HOST);
        DmaBuf buf = r.filled(ex, 8);
        Attachment near = buf.attach(r.hca, new Importer(true, x -> { }));
        locked(buf, () -> buf.pin(near));
        assertEquals(Target.VRAM, ex.placement(buf).orElseThrow(), "every attachment reaches VRAM: pinned there");

        Attachment far = buf.attach(r.hca2, null);
        assertEquals(Errno.EBUSY, errno(() -> buf.mapUnlocked(far, DmaDirection.TO_DEVICE)));
        assertEquals(Target.VRAM, ex.placement(buf).orElseThrow());
        assertEquals(0, far.pinCount(), "the failed map left no pin");
        locked(buf, () -> buf.unpin(near));
        DmaBufMapping m = buf.mapUnlocked(far, DmaDirection.TO_DEVICE);
        assertEquals(Target.HOST, ex.placement(buf).orElseThrow(), "unpinned, it moves for the far HCA");
        assertArrayEquals(pattern(8), deviceRead(r.hca2, m));
        buf.unmapUnlocked(m);
        buf.detach(far);
        buf.detach(near);
        buf.put();
    }

    @Test
    void aWhitelistedHostBridgeGivesTheFarHcaAnIovaIntoVram() {
        Rig r = new Rig(files.hostBridgeAllowsP2p().boot());
        VramExporter ex = r.exporter(Policy.REFUSE);
        DmaBuf buf = r.filled(ex, 9);
        long seq = r.m.tracer().lastSeq();
        List<Attachment> moved = new ArrayList<>();

        Attachment a = buf.attach(r.hca2, new Importer(true, moved::add));
        assertTrue(a.peer2peer());
        DmaBufMapping m = map(buf, a);
        long bus = r.busAddressOf(ex, buf);
        assertNotEquals(bus, m.busAddress(0), "an IOVA");
        assertEquals(Target.VRAM, ex.placement(buf).orElseThrow());
        assertEquals(1, r.m.activeDmaMappings(r.hca2), "mapped with dma_map_resource");
        assertTrue(r.traced(TraceKind.DMA_BUF, seq, "mapped THRU_HOST_BRIDGE", "IOVA"));
        assertArrayEquals(pattern(9), deviceRead(r.hca2, m), "through the IOMMU and the root complex into VRAM");
        r.hca2.dma().busMaster().writeLong(m.busAddress(16), 0x1122334455667788L);
        assertEquals(0x1122334455667788L, MemorySegment.ofArray(r.inVram(ex.vramOffset(buf), 24))
                .get(ValueLayout.JAVA_LONG_UNALIGNED, 16));
        assertEquals(FaultReason.NOT_MAPPED, assertThrows(DmaFaultException.class,
                () -> r.hca2.dma().busMaster().readLong(bus)).reason(), "the raw bus address means nothing to its domain");

        locked(buf, () -> assertTrue(ex.migrate(buf, Target.HOST, "test: evict").await(Duration.ofSeconds(10))));
        assertEquals(List.of(a), moved);
        assertEquals(DmaBufMapping.State.STALE, m.state());
        assertEquals(FaultReason.NOT_MAPPED, assertThrows(DmaFaultException.class,
                () -> r.hca2.dma().busMaster().readLong(m.busAddress(0))).reason());
        assertTrue(r.m.dmaDebug().reports(DmaDebugReport.Kind.ACCESS_REVOKED).getLast().message()
                .contains("dma-buf " + buf.ino()), "revokeResource cut the IOVA off and dma-debug names why");
        locked(buf, () -> buf.unmap(m));
        assertEquals(0, r.m.activeDmaMappings(r.hca2), "the unmap freed the IOVA it kept");
        buf.detach(a);
        buf.put();
    }

    private static DmaDebugReport lastReport(Rig r) {
        return r.m.dmaDebug().reports().getLast();
    }

    private static boolean madeByTheExporter(DmaDebugReport report) {
        return report.mapSite().stream().anyMatch(f -> f.getClassName().endsWith("VramExporter")
                || f.getClassName().endsWith("P2pExporter"));
    }

    /**
     * A BUS_ADDR mapping bypasses the IOMMU, so after the move the old bus address still decodes to VRAM. With
     * dma-debug on, the retired mapping's peer window is revoked: the HCA's read and write through it are refused
     * and reported with the mapping site before a byte moves; after the unmap they are reported as unmapped.
     */
    @Test
    void aStaleBusAddressAfterAMoveIsBlockedAndReportedWithTheMappingSite() {
        Rig r = boot();
        VramExporter ex = r.exporter(Policy.MIGRATE_TO_HOST);
        DmaBuf buf = r.filled(ex, 11);
        long offset = ex.vramOffset(buf);
        List<Attachment> moved = new ArrayList<>();
        Attachment a = buf.attach(r.hca, new Importer(true, moved::add));
        DmaBufMapping m = map(buf, a);
        long bus = m.busAddress(0);

        var fence = lockedGet(buf, () -> ex.migrate(buf, Target.HOST, "test: evict to system memory"));
        assertEquals(List.of(a), moved, "move_notify");
        assertTrue(fence.await(Duration.ofSeconds(10)));
        assertEquals(DmaBufMapping.State.STALE, m.state());

        DmaFaultException read = assertThrows(DmaFaultException.class, () -> deviceRead(r.hca, m));
        assertEquals(FaultReason.DEBUG_UNMAPPED, read.reason());
        assertEquals(bus, read.busAddr());
        DmaDebugReport revoked = lastReport(r);
        assertEquals(DmaDebugReport.Kind.ACCESS_REVOKED, revoked.kind());
        assertEquals(r.hca.name(), revoked.device());
        assertTrue(revoked.message().contains("dma-buf " + buf.ino()) && revoked.message().contains("moved from VRAM"),
                revoked.message());
        assertTrue(madeByTheExporter(revoked), "the report names the exporter's map as the site");
        assertThrows(DmaFaultException.class, () -> r.hca.dma().busMaster().write(bus + 128, MemorySegment.ofArray(new byte[64])));
        assertArrayEquals(pattern(11), r.inVram(offset, SIZE), "no byte reached the VRAM the buffer left");
        assertEquals(List.of(), r.m.iommu().faults(), "dma-debug, not the IOMMU, stopped it");

        locked(buf, () -> buf.unmap(m));
        assertThrows(DmaFaultException.class, () -> r.hca.dma().busMaster().readLong(bus));
        DmaDebugReport unmapped = lastReport(r);
        assertEquals(DmaDebugReport.Kind.ACCESS_UNMAPPED, unmapped.kind());
        assertTrue(madeByTheExporter(unmapped), unmapped.describe());

        DmaBufMapping again = map(buf, a);
        assertFalse(inBar(r.vram, again.busAddress(0)), "the buffer is in system memory now: an IOVA");
        assertArrayEquals(pattern(11), deviceRead(r.hca, again));
        locked(buf, () -> buf.unmap(again));
        buf.detach(a);
        buf.put();
        assertEquals(0, r.m.activeDmaMappings());
    }

    @Test
    void revokeAndPlainUnmapOfABusAddressMappingAreCaughtToo() {
        Rig r = boot();
        VramExporter ex = r.exporter(Policy.MIGRATE_TO_HOST);
        DmaBuf buf = r.filled(ex, 12);
        Attachment a = buf.attach(r.hca, new Importer(true, x -> { }));

        DmaBufMapping first = map(buf, a);
        locked(buf, () -> buf.unmap(first));
        assertThrows(DmaFaultException.class, () -> deviceRead(r.hca, first));
        assertEquals(DmaDebugReport.Kind.ACCESS_UNMAPPED, lastReport(r).kind());

        DmaBufMapping m = map(buf, a);
        assertArrayEquals(pattern(12), deviceRead(r.hca, m), "a new mapping of the same bus addresses works");
        locked(buf, () -> ex.revoke(buf, "test: GPU reset"));
        assertEquals(DmaBufMapping.State.STALE, m.state());
        assertThrows(DmaFaultException.class, () -> r.hca.dma().busMaster().writeLong(m.busAddress(8), 1));
        DmaDebugReport revoked = lastReport(r);
        assertEquals(DmaDebugReport.Kind.ACCESS_REVOKED, revoked.kind());
        assertTrue(revoked.message().contains("GPU reset"), revoked.message());
        locked(buf, () -> buf.unmap(m));
        buf.detach(a);
        buf.put();
    }

    /**
     * With dma-debug off nothing stands between the HCA and a stale bus address, as on real hardware: the freed VRAM
     * went to the next buffer, and the HCA reads and overwrites that buffer's bytes. This is why an importer must
     * stop using a mapping once the move fence signals.
     */
    @Test
    void withDmaDebugOffAStaleBusAddressReachesWhateverVramHoldsNow() {
        Rig r = new Rig(files.boot(new Machine.Options(false, 4)));
        VramExporter ex = r.exporter(Policy.MIGRATE_TO_HOST);
        DmaBuf first = r.filled(ex, 13);
        long offset = ex.vramOffset(first);
        Attachment a = first.attach(r.hca, new Importer(true, x -> { }));
        DmaBufMapping m = map(first, a);
        locked(first, () -> assertTrue(ex.migrate(first, Target.HOST, "test").await(Duration.ofSeconds(10))));
        assertEquals(DmaBufMapping.State.STALE, m.state());

        DmaBuf next = r.filled(ex, 14);
        assertEquals(offset, ex.vramOffset(next), "the freed VRAM was handed out again at once");
        assertArrayEquals(pattern(14), deviceRead(r.hca, m), "the stale mapping reads the next buffer's bytes");
        r.hca.dma().busMaster().writeLong(m.busAddress(0), 0xdeadL);
        assertEquals(0xdeadL, MemorySegment.ofArray(cpuRead(next)).get(ValueLayout.JAVA_LONG_UNALIGNED, 0),
                "and overwrites them");
        assertArrayEquals(pattern(13), cpuRead(first), "the moved buffer itself is intact in system memory");
        assertEquals(List.of(), r.m.dmaDebug().reports());
        locked(first, () -> first.unmap(m));
        first.detach(a);
        first.put();
        next.put();
    }
}
