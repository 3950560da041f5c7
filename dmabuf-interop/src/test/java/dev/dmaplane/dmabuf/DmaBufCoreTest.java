package dev.dmaplane.dmabuf;

import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.SgEntry;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.resource.DeviceResources;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.ResourceLimits;
import dev.dmaplane.resource.UContext;
import dev.dmaplane.resource.UObject;
import dev.dmaplane.testing.Blocked;
import dev.dmaplane.testing.CopyEngineClient;
import dev.dmaplane.testing.TestMachines;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.ST_OK;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The dma-buf core as Documentation/driver-api/dma-buf.rst and drivers/dma-buf/dma-buf.c define it:
 * dma_buf_export's checks, dma_buf_dynamic_attach, map/unmap under the documented locking convention,
 * pin-on-map of static importers on dynamic exporters with the KERNEL-fence wait, detach, file-like lifetime
 * (dma_buf_fd/dma_buf_get/dma_buf_put) and the debugfs bufinfo format; include/linux/dma-buf.h for the ops.
 */
class DmaBufCoreTest {
    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final DmaBufs bufs = DmaBufs.of(machine);
    private final PciFunction gpu = machine.pci().function("03:00.0");
    private final PciFunction hca = machine.pci().function("05:00.0");
    private final HostMemory mem = machine.memory();

    @AfterEach
    void close() {
        machine.close();
    }

    private static Errno errno(Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    private static Importer importer(List<Attachment> moved) {
        return new Importer(false, moved::add);
    }

    /** A dynamic (pin/unpin) or static exporter over one host block, counting its ops. */
    final class HostExporter {
        final long pfn = mem.allocPages(2);
        final AtomicInteger pins = new AtomicInteger();
        final AtomicInteger releases = new AtomicInteger();
        final AtomicInteger maps = new AtomicInteger();
        final SgTable table = new SgTable(List.of(new SgEntry(pfn << HostMemory.PAGE_SHIFT, 16384)));

        Exporter.Builder ops(boolean dynamic) {
            Exporter.Builder b = Exporter.builder()
                    .map((a, dir) -> {
                        maps.incrementAndGet();
                        return a.device().dma().mapSg(table, dir);
                    })
                    .unmap((a, sg, dir) -> {
                        maps.decrementAndGet();
                        a.device().dma().unmapSg(sg, dir);
                    })
                    .release(buf -> {
                        releases.incrementAndGet();
                        mem.putPage(pfn);
                    });
            if (dynamic) {
                b.pin(a -> pins.incrementAndGet()).unpin(a -> pins.decrementAndGet());
            }
            return b;
        }

        DmaBuf export(boolean dynamic) {
            return bufs.export(ExportInfo.of("test-exporter", 16384, ops(dynamic).build()));
        }
    }

    @Test
    void exportRefusesIncompleteOpsAndBadSizesNamingWhatIsWrong() {
        Exporter noMap = Exporter.builder().unmap((a, s, d) -> { }).release(b -> { }).build();
        ErrnoException e = assertThrows(ErrnoException.class, () -> bufs.export(ExportInfo.of("x", 4096, noMap)));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("map_dma_buf is missing"), e.getMessage());
        Exporter onlyPin = Exporter.builder().map((a, d) -> null).unmap((a, s, d) -> { }).release(b -> { })
                .pin(a -> { }).build();
        e = assertThrows(ErrnoException.class, () -> bufs.export(ExportInfo.of("x", 4096, onlyPin)));
        assertTrue(e.getMessage().contains("pin is set without unpin"), e.getMessage());
        Exporter noRelease = Exporter.builder().map((a, d) -> null).unmap((a, s, d) -> { }).build();
        e = assertThrows(ErrnoException.class, () -> bufs.export(ExportInfo.of("x", 4096, noRelease)));
        assertTrue(e.getMessage().contains("release is missing"), e.getMessage());

        HostExporter h = new HostExporter();
        Exporter ok = h.ops(false).build();
        assertEquals(Errno.EINVAL, errno(() -> bufs.export(ExportInfo.of("x", 0, ok))));
        e = assertThrows(ErrnoException.class, () -> bufs.export(ExportInfo.of("x", 4095, ok)));
        assertTrue(e.getMessage().contains("4095"), e.getMessage());
        assertEquals(Errno.EINVAL, errno(() -> bufs.export(ExportInfo.of(" ", 4096, ok))));
        assertTrue(bufs.list().isEmpty(), "refused exports leave nothing behind");

        DmaBuf a = bufs.export(ExportInfo.of("x", 4096, ok));
        DmaBuf b = bufs.export(ExportInfo.of("x", 4096, ok));
        assertNotEquals(a.ino(), b.ino());
        assertFalse(a.isDynamic());
        assertTrue(h.export(true).isDynamic());
        assertEquals(3, bufs.list().size());
    }

    /**
     * A writer (the GPU's copy engine) and a reader (HCA 05:00.0, its own IOMMU group) share a system-heap buffer,
     * each through its own mapping: different IOVAs in different domains, the same bytes.
     */
    @Test
    void copyEngineWritesAndAnotherDeviceReadsTheSameBytesThroughItsOwnMapping() {
        DmaBuf buf = new SystemHeap(bufs).allocate(64 * 1024);
        Attachment writer = buf.attach(gpu, null);
        List<Attachment> moved = new ArrayList<>();
        Attachment reader = buf.attach(hca, importer(moved));
        DmaBufMapping w = buf.mapUnlocked(writer, DmaDirection.BIDIRECTIONAL);
        buf.resv().lock();
        DmaBufMapping r;
        try {
            r = buf.map(reader, DmaDirection.BIDIRECTIONAL);
        } finally {
            buf.resv().unlock();
        }
        assertEquals(64 * 1024, w.length());
        assertNotSame(machine.iommu().groupOf(gpu).orElseThrow().domain(), machine.iommu().groupOf(hca).orElseThrow().domain(),
                "05:00.0 has a domain of its own: its IOVAs mean nothing to the GPU");
        PciFunction sibling = machine.pci().function("04:00.0");
        Attachment reader2 = buf.attach(sibling, null);
        DmaBufMapping r2 = buf.mapUnlocked(reader2, DmaDirection.TO_DEVICE);
        assertSame(machine.iommu().groupOf(gpu).orElseThrow(), machine.iommu().groupOf(sibling).orElseThrow());
        assertNotEquals(w.busAddress(0), r2.busAddress(0), "04:00.0 shares the GPU's domain, so its mapping has other IOVAs");

        long src = mem.allocPages(4) << HostMemory.PAGE_SHIFT;
        MemorySegment pattern = mem.slice(src, 64 * 1024);
        for (int i = 0; i < 64 * 1024; i++) {
            pattern.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 13 + 5));
        }
        long srcIova = gpu.dma().mapSingle(src, 64 * 1024, DmaDirection.TO_DEVICE);
        try (CopyEngineClient ce = new CopyEngineClient(gpu)) {
            long off = 0;
            for (DmaSegment s : w.segments()) {
                assertEquals(ST_OK, ce.copy(srcIova + off, s.dmaAddress(), (int) s.length()));
                off += s.length();
            }
        }
        gpu.dma().unmapSingle(srcIova, 64 * 1024, DmaDirection.TO_DEVICE);

        hca.setMaster(true);
        byte[] seen = new byte[64 * 1024];
        long off = 0;
        for (DmaSegment s : r.segments()) {
            hca.dma().busMaster().read(s.dmaAddress(), MemorySegment.ofArray(seen).asSlice(off, s.length()));
            off += s.length();
        }
        assertArrayEquals(pattern.toArray(ValueLayout.JAVA_BYTE), seen);
        sibling.setMaster(true);
        byte[] seen2 = new byte[64 * 1024];
        off = 0;
        for (DmaSegment s : r2.segments()) {
            sibling.dma().busMaster().read(s.dmaAddress(), MemorySegment.ofArray(seen2).asSlice(off, s.length()));
            off += s.length();
        }
        assertArrayEquals(seen, seen2);
        buf.unmapUnlocked(r2);
        buf.detach(reader2);
        byte[] cpu = new byte[64 * 1024];
        buf.resv().lock();
        try {
            buf.cpuRead(0, MemorySegment.ofArray(cpu));
            buf.unmap(r);
        } finally {
            buf.resv().unlock();
        }
        assertArrayEquals(seen, cpu, "the CPU view sees what the device wrote");
        buf.unmapUnlocked(w);
        buf.detach(writer);
        buf.detach(reader);
        buf.put();
        assertEquals(0, machine.activeDmaMappings());
        assertTrue(moved.isEmpty(), "a static exporter never moves");
    }

    @Test
    void handlesAreFdsWithDupCloseAndLastCloseRelease() {
        HostExporter h = new HostExporter();
        DmaBuf buf = h.export(false);
        long framesWithBuf = mem.allocatedFrames();
        DeviceResources res = new DeviceResources("0000:05:00.0", machine.tracer(), ResourceLimits.UNLIMITED);
        UContext ctx = res.open();
        DmaBufHandle fd = buf.fd(ctx);
        DmaBufHandle fd2 = fd.dup();
        assertNotEquals(fd.handle(), fd2.handle());
        assertSame(buf, fd2.dmabuf());
        buf.put();
        assertEquals(2, buf.refCount(), "one reference per fd");
        DmaBuf got = DmaBufs.get(ctx, fd2.handle());
        assertSame(buf, got);
        assertEquals(3, buf.refCount());
        got.put();

        DmaBufs.close(ctx, fd.handle());
        assertEquals(Errno.EBADF, errno(() -> DmaBufs.get(ctx, fd.handle())), "a closed fd");
        assertEquals(Errno.EBADF, errno(() -> DmaBufs.close(ctx, fd.handle())));
        assertEquals(Errno.EBADF, errno(() -> DmaBufs.get(ctx, 99)), "an fd never opened");
        assertEquals(Errno.EBADF, errno(fd::dup));
        UObject other = ctx.register(new UObject("pd") {
            @Override
            protected void release(RemoveReason reason) {
            }
        });
        assertEquals(Errno.EINVAL, errno(() -> DmaBufs.get(ctx, other.handle())), "not a dma-buf file");
        assertEquals(0, h.releases.get());
        assertEquals(1, buf.refCount());

        ctx.close();
        assertEquals(1, h.releases.get(), "the last close released the buffer, once");
        assertTrue(buf.isReleased());
        assertEquals(framesWithBuf - 4, mem.allocatedFrames());
        assertFalse(bufs.list().contains(buf));
        assertEquals(Errno.EBADF, errno(buf::put));
        assertEquals(Errno.EBADF, errno(buf::get));
        assertEquals(Errno.EBADF, errno(() -> buf.attach(hca, null)));
        assertEquals(1, h.releases.get());
    }

    @Test
    void lockingConventionAndBadInputChangeNothing() {
        HostExporter h = new HostExporter();
        DmaBuf buf = h.export(false);
        List<Attachment> moved = new ArrayList<>();
        assertEquals(Errno.EINVAL, errno(() -> buf.attach(hca, new Importer(true, null))), "no move_notify");
        assertEquals(Errno.EINVAL, errno(() -> buf.attach(null, null)));
        Attachment dyn = buf.attach(hca, importer(moved));
        Attachment stat = buf.attach(gpu, null);
        assertEquals(2, buf.attachments().size());

        assertEquals(Errno.EPERM, errno(() -> buf.map(dyn, DmaDirection.TO_DEVICE)), "dynamic map without the lock");
        assertEquals(Errno.EPERM, errno(() -> buf.mapUnlocked(dyn, DmaDirection.TO_DEVICE)), "dynamic importers use the locked call");
        assertEquals(Errno.EPERM, errno(() -> buf.map(stat, DmaDirection.TO_DEVICE)), "the locked call needs the lock");
        assertEquals(0, h.maps.get());

        buf.resv().lock();
        try {
            assertEquals(Errno.EDEADLK, errno(() -> buf.attach(hca, null)), "attach takes the lock itself");
            assertEquals(Errno.EDEADLK, errno(() -> buf.mapUnlocked(stat, DmaDirection.TO_DEVICE)));
            assertEquals(Errno.EINVAL, errno(() -> buf.map(dyn, DmaDirection.NONE)));
            assertEquals(Errno.EINVAL, errno(() -> buf.map(dyn, null)));
            DmaBufMapping m = buf.map(dyn, DmaDirection.TO_DEVICE);
            assertEquals(1, machine.activeDmaMappings(hca));
            buf.unmap(m);
            assertEquals(DmaBufMapping.State.UNMAPPED, m.state());
            assertEquals(Errno.EINVAL, errno(() -> buf.unmap(m)), "double unmap");
            assertEquals(0, machine.activeDmaMappings(hca));
            assertEquals(0, h.maps.get());
        } finally {
            buf.resv().unlock();
        }
        DmaBufMapping s = buf.mapUnlocked(stat, DmaDirection.FROM_DEVICE);
        assertEquals(Errno.EPERM, errno(() -> buf.unmap(s)), "unmap without the lock");
        buf.unmapUnlocked(s);

        DmaBuf other = h.export(false);
        Attachment foreign = other.attach(hca, null);
        assertEquals(Errno.EINVAL, errno(() -> buf.mapUnlocked(foreign, DmaDirection.TO_DEVICE)), "an attachment of another buffer");
        assertEquals(Errno.EINVAL, errno(() -> buf.detach(foreign)));
        buf.detach(stat);
        assertEquals(Errno.EINVAL, errno(() -> buf.mapUnlocked(stat, DmaDirection.TO_DEVICE)), "map after detach");
        assertEquals(Errno.EINVAL, errno(() -> buf.detach(stat)), "detach twice");
        assertEquals(List.of(dyn), buf.attachments());
        buf.resv().lock();
        try {
            assertEquals(Errno.EINVAL, errno(() -> buf.pin(foreign)));
            assertEquals(Errno.EINVAL, errno(() -> buf.unpin(dyn)), "nothing to unpin");
        } finally {
            buf.resv().unlock();
        }
        assertEquals(0, machine.activeDmaMappings());
    }

    @Test
    void exporterMayRefuseAnAttachWithItsErrno() {
        HostExporter h = new HostExporter();
        DmaBuf buf = bufs.export(ExportInfo.of("picky", 16384, h.ops(false).attach((b, a) -> {
            throw new ErrnoException(Errno.EOPNOTSUPP, "picky cannot reach " + a.device().name());
        }).build()));
        assertEquals(Errno.EOPNOTSUPP, errno(() -> buf.attach(hca, null)));
        assertTrue(buf.attachments().isEmpty());
    }

    /**
     * dma_buf_map_attachment for a static importer of a dynamic exporter: the exporter is pinned for the mapping
     * and unpinned at unmap, and the map waits for the KERNEL fences (a move in flight) first.
     */
    @Test
    void staticImporterOfDynamicExporterPinsAtMapAndWaitsForKernelFences() throws Exception {
        HostExporter h = new HostExporter();
        DmaBuf buf = h.export(true);
        Attachment stat = buf.attach(hca, null);
        FenceContext ctx = FenceContext.allocate("test", "move", machine.tracer());
        Fence move = ctx.createFence();
        buf.resv().lock();
        try {
            buf.resv().reserveFences(1);
            buf.resv().addFence(move, ResvUsage.KERNEL);
        } finally {
            buf.resv().unlock();
        }
        Blocked.Call<DmaBufMapping> f = Blocked.start("map", () -> buf.mapUnlocked(stat, DmaDirection.TO_DEVICE))
                .awaitBlockedIn(Blocked.CONDITION_AWAIT_NANOS, "dev.dmaplane.fence.impl.FenceCore.await",
                        "dev.dmaplane.fence.Reservation.await", "dev.dmaplane.dmabuf.impl.DmaBufImpl.map");
        assertFalse(f.isDone(), "the map waits for the move fence");
        move.signal();
        DmaBufMapping m = f.get();
        assertEquals(1, h.pins.get());
        assertEquals(1, stat.pinCount());
        buf.unmapUnlocked(m);
        assertEquals(0, h.pins.get());

        Fence stuck = ctx.createFence();
        buf.resv().lock();
        try {
            buf.resv().reserveFences(1);
            buf.resv().addFence(stuck, ResvUsage.KERNEL);
        } finally {
            buf.resv().unlock();
        }
        bufs.setFenceTimeout(Duration.ofMillis(100));
        assertEquals(Errno.ETIMEDOUT, errno(() -> buf.mapUnlocked(stat, DmaDirection.TO_DEVICE)));
        assertEquals(0, h.pins.get(), "a failed map leaves no pin");
        assertEquals(0, h.maps.get(), "and no mapping");
        assertEquals(0, machine.activeDmaMappings());
        stuck.signal();

        List<Attachment> moved = new ArrayList<>();
        Attachment dyn = buf.attach(gpu, importer(moved));
        buf.resv().lock();
        try {
            DmaBufMapping dm = buf.map(dyn, DmaDirection.BIDIRECTIONAL);
            assertEquals(0, h.pins.get(), "dynamic importers are not pinned at map");
            buf.pin(dyn);
            assertEquals(1, h.pins.get());
            buf.unpin(dyn);
            buf.unmap(dm);
        } finally {
            buf.resv().unlock();
        }
    }

    @Test
    void detachWithAMappingStillHeldIsReportedAndUnmapped() {
        DmaBuf buf = new SystemHeap(bufs).allocate(8192);
        Attachment a = buf.attach(hca, null);
        DmaBufMapping m = buf.mapUnlocked(a, DmaDirection.BIDIRECTIONAL);
        assertEquals(1, machine.activeDmaMappings(hca));
        long seq = machine.tracer().lastSeq();
        buf.detach(a);
        assertEquals(0, machine.activeDmaMappings(hca));
        assertEquals(DmaBufMapping.State.UNMAPPED, m.state());
        List<DmaDebugReport> leaks = machine.dmaDebug().reports(DmaDebugReport.Kind.LEAK_AT_UNBIND);
        assertEquals(1, leaks.size());
        assertTrue(leaks.getFirst().message().contains("dma_buf_detach"), leaks.getFirst().message());
        assertTrue(machine.tracer().since(seq).stream().anyMatch(e -> e.kind() == TraceKind.DMA_BUF
                && e.detail().contains("mapping still held")));
        buf.put();
    }

    @Test
    void namesAndBufinfo() {
        DmaBuf buf = new SystemHeap(bufs).allocate(5000);
        assertEquals(8192, buf.size());
        assertNull(buf.name());
        Attachment a = buf.attach(hca, new Importer(true, x -> { }));
        buf.setName("camera-frame");
        assertEquals("camera-frame", buf.name(), "renaming while attached is allowed (Linux >= 6.5)");
        assertEquals(Errno.EINVAL, errno(() -> buf.setName("x".repeat(32))));
        assertEquals(Errno.EINVAL, errno(() -> buf.setName(null)));
        assertEquals("camera-frame", buf.name());

        FenceContext ctx = FenceContext.allocate("gpu-sched", "gfx", machine.tracer());
        Fence f = ctx.createFence();
        buf.resv().lock();
        try {
            buf.resv().reserveFences(1);
            buf.resv().addFence(f, ResvUsage.WRITE);
            buf.map(a, DmaDirection.TO_DEVICE);
        } finally {
            buf.resv().unlock();
        }
        String info = bufs.bufinfo();
        assertTrue(info.contains("Dma-buf Objects:"), info);
        assertTrue(info.contains(String.format("%08d\t%08x\t%08x\t%08d\tsystem\t%08d\tcamera-frame", 8192, 2, 3, 1, buf.ino())), info);
        assertTrue(info.contains("\twrite fence: gpu-sched gfx seq 1 unsignalled"), info);
        assertTrue(info.contains("\t0000:05:00.0 (dynamic, p2p, pins 0, mappings 1)"), info);
        assertTrue(info.contains("static exporter, not pinned"), info);
        assertTrue(info.contains("Total 1 devices attached"), info);
        assertTrue(info.contains("Total 1 objects, 8192 bytes"), info);
        f.signal();
        assertTrue(bufs.bufinfo().contains("seq 1 signalled"));
        buf.detach(a);
        buf.put();
        assertTrue(bufs.bufinfo().contains("Total 0 objects, 0 bytes"));
    }
}
