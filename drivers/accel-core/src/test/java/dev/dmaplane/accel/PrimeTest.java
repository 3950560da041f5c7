package dev.dmaplane.accel;

import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufMapping;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.Importer;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.Blocked;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Supplier;

import static dev.dmaplane.accel.AccelRig.MIB;
import static dev.dmaplane.accel.BufferObjectTest.errno;
import static dev.dmaplane.accel.BufferObjectTest.pattern;
import static dev.dmaplane.accel.BufferObjectTest.read;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * PRIME as {@code drivers/gpu/drm/drm_prime.c} ({@code drm_gem_prime_handle_to_fd}, {@code drm_gem_prime_fd_to_handle}:
 * one dma-buf per object, the same object and handle back on self-import) with amdgpu's dma-buf ops
 * ({@code amdgpu_dma_buf.c}: p2pdma distance at attach, VRAM pinned only for peer-to-peer importers, migration to
 * system memory for the others, {@code amdgpu_dma_buf_move_notify} invalidating the GPU VM of a foreign import), on
 * {@code accel-p2p.yaml} with real bytes written by the "GPU" (the test provider's copy engine through its page
 * tables) and by the importers' bus masters.
 */
class PrimeTest {
    private static final int SIZE = 64 * 1024;
    private static final long VA = 1L << 32;

    private final AccelRig rig = new AccelRig("accel-p2p.yaml", "0000:03:00.0");
    private final DmaBufs bufs = DmaBufs.of(rig.machine);
    /** Under the accelerator's switch. */
    private final PciFunction peer = rig.machine.pci().function("0000:04:00.0");
    /** Behind the other root port. */
    private final PciFunction far = rig.machine.pci().function("0000:05:00.0");
    private final Bar window = rig.fn.bar(2).orElseThrow();

    PrimeTest() {
        for (PciFunction f : List.of(peer, far)) {
            f.setMaster(true);
            f.dma().setDmaMask(-1L);
        }
    }

    @AfterEach
    void tearDown() throws InterruptedException {
        rig.close();
    }

    private static <T> T locked(DmaBuf buf, Supplier<T> s) {
        buf.resv().lock();
        try {
            return s.get();
        } finally {
            buf.resv().unlock();
        }
    }

    private static void lockedRun(DmaBuf buf, Runnable r) {
        locked(buf, () -> {
            r.run();
            return null;
        });
    }

    private TreeMap<Long, Long> pageTable(AccelContext ctx) {
        return rig.gpu.pageTables.get(rig.device.name() + " ctx " + ctx.id());
    }

    /** The GPU's copy engine moves {@code bytes} to or from {@code [va, va + bytes)} through the context's page table. */
    private void gpu(AccelContext ctx, long va, byte[] bytes, boolean write) {
        TreeMap<Long, Long> pt = pageTable(ctx);
        List<GpuRun> runs = new ArrayList<>();
        synchronized (pt) {
            for (long at = va; at < va + bytes.length; at += TestGpu.PAGE) {
                Long entry = pt.get(at);
                assertTrue(entry != null, String.format("VA %#x is mapped", at));
                runs.add(new GpuRun(Aperture.of(entry), entry & ~Aperture.SYSTEM_BIT, TestGpu.PAGE));
            }
        }
        rig.gpu.transfer(runs, MemorySegment.ofArray(bytes), write);
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

    private static void deviceWrite(PciFunction dev, DmaBufMapping m, byte[] data) {
        long off = 0;
        for (DmaSegment s : m.segments()) {
            dev.dma().busMaster().write(s.dmaAddress(), MemorySegment.ofArray(data).asSlice(off, s.length()));
            off += s.length();
        }
    }

    private static void awaitKernel(DmaBuf buf) {
        assertTrue(buf.resv().await(ResvUsage.KERNEL, Duration.ofSeconds(10)), "the move finished");
    }

    /** Waits for the object's KERNEL fences (its clear or move), as a GPU job using it depends on them. */
    private static void idle(AccelContext ctx, int h) {
        assertTrue(ctx.reservation(h).await(ResvUsage.KERNEL, Duration.ofSeconds(10)), "the copy engine finished");
    }

    /** A window object bound at {@link #VA}, filled by the GPU with {@code pattern(SIZE, seed)}. */
    private int gpuFilled(AccelContext ctx, int seed) {
        int h = ctx.createBo(SIZE, Placement.VISIBLE_VRAM, EnumSet.allOf(Placement.class));
        ctx.vmBind(h, 0, VA, SIZE, true);
        idle(ctx, h);
        gpu(ctx, VA, pattern(SIZE, seed), true);
        return h;
    }

    @Test
    void aPeerUnderTheSwitchMapsTheVramPeerToPeerAndBytesFlowBothWays() {
        try (AccelContext ctx = rig.device.open()) {
            int h = gpuFilled(ctx, 1);
            DmaBuf buf = ctx.primeExport(h);
            assertSame(buf, ctx.primeExport(h), "exporting twice gives the same dma-buf");
            assertEquals(1, bufs.list().stream().filter(b -> b == buf).count(), "registered in the machine's dma-bufs");
            Attachment a = buf.attach(peer, new Importer(true, x -> { }));
            assertTrue(a.peer2peer(), "p2pdma: both under one switch");
            DmaBufMapping m = locked(buf, () -> {
                buf.pin(a);
                return buf.map(a, DmaDirection.BIDIRECTIONAL);
            });
            long bus = m.segments().getFirst().dmaAddress();
            assertTrue(bus >= window.address() && bus + SIZE <= window.address() + window.size(),
                    String.format("BUS_ADDR %#x inside the BAR", bus));
            assertEquals(Placement.VISIBLE_VRAM, ctx.info(h).placement());
            assertTrue(ctx.info(h).pinned(), "pinned in VRAM: every importer is peer-to-peer");
            assertArrayEquals(pattern(SIZE, 1), deviceRead(peer, m), "the GPU's bytes, read by the peer");

            deviceWrite(peer, m, pattern(SIZE, 2));
            byte[] back = new byte[SIZE];
            gpu(ctx, VA, back, false);
            assertArrayEquals(pattern(SIZE, 2), back, "the peer's bytes, read by the GPU");

            lockedRun(buf, () -> {
                buf.unmap(m);
                buf.unpin(a);
            });
            buf.detach(a);
            buf.put();
            buf.put();
        }
    }

    @Test
    void anEndpointBehindAnotherRootPortMakesTheObjectMigrateToHost() {
        try (AccelContext ctx = rig.device.open()) {
            int h = gpuFilled(ctx, 3);
            DmaBuf buf = ctx.primeExport(h);
            List<Attachment> told = new ArrayList<>();
            Attachment a = buf.attach(far, new Importer(true, told::add));
            assertFalse(a.peer2peer(), "p2pdma: the host bridge is not whitelisted");
            DmaBufMapping m = locked(buf, () -> buf.map(a, DmaDirection.BIDIRECTIONAL));
            awaitKernel(buf);
            assertEquals(Placement.HOST, ctx.info(h).placement(), "a TTM move through the provider");
            assertTrue(rig.provider.moves.get() > 0);
            assertArrayEquals(pattern(SIZE, 3), deviceRead(far, m), "the GPU's bytes, through the importer's IOMMU");

            deviceWrite(far, m, pattern(SIZE, 4));
            ctx.vmValidate();
            idle(ctx, h);
            byte[] back = new byte[SIZE];
            gpu(ctx, VA, back, false);
            assertArrayEquals(pattern(SIZE, 4), back, "the GPU reads the importer's bytes in host memory");

            lockedRun(buf, () -> buf.unmap(m));
            buf.detach(a);
            buf.put();
        }
    }

    /** With the host bridge on p2pdma's whitelist the far endpoint maps the VRAM through it, as THRU_HOST_BRIDGE. */
    @Test
    void withTheHostBridgeWhitelistedTheFarEndpointMapsThroughIt() throws InterruptedException {
        try (AccelRig whitelisted = new AccelRig("accel-p2p.yaml", "0000:03:00.0",
                text -> text.replace("p2pAllowed: false", "p2pAllowed: true"))) {
            PciFunction far2 = whitelisted.machine.pci().function("0000:05:00.0");
            far2.setMaster(true);
            far2.dma().setDmaMask(-1L);
            try (AccelContext ctx = whitelisted.device.open()) {
                int h = ctx.createBo(SIZE, Placement.VISIBLE_VRAM, EnumSet.allOf(Placement.class));
                assertTrue(ctx.reservation(h).await(ResvUsage.KERNEL, Duration.ofSeconds(10)));
                ctx.write(h, 0, MemorySegment.ofArray(pattern(SIZE, 15)));
                DmaBuf buf = ctx.primeExport(h);
                Attachment a = buf.attach(far2, new Importer(true, x -> { }));
                assertTrue(a.peer2peer());
                DmaBufMapping m = locked(buf, () -> buf.map(a, DmaDirection.BIDIRECTIONAL));
                long iova = m.segments().getFirst().dmaAddress();
                Bar bar = whitelisted.fn.bar(2).orElseThrow();
                assertFalse(iova >= bar.address() && iova < bar.address() + bar.size(), "an IOVA, not the bus address");
                assertEquals(Placement.VISIBLE_VRAM, ctx.info(h).placement(), "the object stays in VRAM");
                assertArrayEquals(pattern(SIZE, 15), deviceRead(far2, m));
                lockedRun(buf, () -> buf.unmap(m));
                buf.detach(a);
                buf.put();
            }
        }
    }

    @Test
    void selfImportGivesTheSameObjectAndTheSameHandle() {
        try (AccelContext ctx = rig.device.open(); AccelContext other = rig.device.open()) {
            int h = gpuFilled(ctx, 5);
            DmaBuf buf = ctx.primeExport(h);
            assertEquals(h, ctx.primeImport(buf), "drm_gem_prime_fd_to_handle: the handle this context has");
            int h2 = other.primeImport(buf);
            assertEquals(h2, other.primeImport(buf), "again the same handle");
            assertArrayEquals(pattern(SIZE, 5), read(other, h2, 0, SIZE), "the same object");
            other.write(h2, 0, MemorySegment.ofArray(pattern(SIZE, 6)));
            assertArrayEquals(pattern(SIZE, 6), read(ctx, h, 0, SIZE));
            buf.put();
            ctx.closeBo(h);
            ctx.vmUnbind(VA, SIZE);
            assertArrayEquals(pattern(SIZE, 6), read(other, h2, 0, SIZE), "the second handle keeps the object");
            other.closeBo(h2);
        }
        assertEquals(AccelRig.VRAM, rig.vramAvailableWhenIdle(), "freed with its last handle");
    }

    @Test
    void errnos() {
        try (AccelContext ctx = rig.device.open()) {
            assertEquals(Errno.ENOENT, errno(() -> ctx.primeExport(42)));
            int priv = ctx.createBo(SIZE, Placement.VRAM, EnumSet.of(Placement.VRAM, Placement.HOST),
                    Set.of(CreateFlag.VM_ALWAYS_VALID));
            assertEquals(Errno.EPERM, errno(() -> ctx.primeExport(priv)), "private to the context's VM");
            DmaBuf revoked = new SystemHeap(bufs).allocate(SIZE);
            lockedRun(revoked, () -> revoked.revoke("test"));
            assertEquals(Errno.ENODEV, errno(() -> ctx.primeImport(revoked)));
            DmaBuf closed = new SystemHeap(bufs).allocate(SIZE);
            closed.put();
            assertEquals(Errno.EBADF, errno(() -> ctx.primeImport(closed)));
            assertEquals(Errno.EINVAL, errno(() -> ctx.primeImport(null)));
            revoked.put();
        }
    }

    @Test
    void aForeignSystemHeapBufferIsMappedForTheGpuAsSystemRuns() {
        DmaBuf sys = new SystemHeap(bufs).allocate(SIZE);
        lockedRun(sys, () -> sys.cpuWrite(0, MemorySegment.ofArray(pattern(SIZE, 7))));
        try (AccelContext ctx = rig.device.open()) {
            int h = ctx.primeImport(sys);
            assertEquals(h, ctx.primeImport(sys), "importing it again gives the same handle");
            assertEquals(Placement.HOST, ctx.info(h).placement());
            assertArrayEquals(pattern(SIZE, 7), read(ctx, h, 0, SIZE), "CPU access through the exporter");
            ctx.vmBind(h, 0, VA, SIZE, true);
            assertTrue(pageTable(ctx).values().stream().allMatch(e -> Aperture.of(e) == Aperture.SYSTEM));
            byte[] got = new byte[SIZE];
            gpu(ctx, VA, got, false);
            assertArrayEquals(pattern(SIZE, 7), got, "the GPU reads it through its IOMMU");
            gpu(ctx, VA, pattern(SIZE, 8), true);
            byte[] cpu = new byte[SIZE];
            lockedRun(sys, () -> sys.cpuRead(0, MemorySegment.ofArray(cpu)));
            assertArrayEquals(pattern(SIZE, 8), cpu, "the GPU's write reached the exporter's pages");
            ctx.closeBo(h);
            ctx.vmUnbind(VA, SIZE);
        }
        assertTrue(sys.attachments().isEmpty(), "detached with the object's last reference");
        sys.put();
    }

    @Test
    void aForeignMoveInvalidatesTheVmBindingUntilTheNextValidate() {
        VramExporter foreign = new VramExporter(bufs, P2pDma.of(rig.machine), peer, 2, VramExporter.Policy.MIGRATE_TO_HOST);
        DmaBuf buf = foreign.allocate(SIZE);
        lockedRun(buf, () -> buf.cpuWrite(0, MemorySegment.ofArray(pattern(SIZE, 9))));
        try (AccelContext ctx = rig.device.open()) {
            int h = ctx.primeImport(buf);
            ctx.vmBind(h, 0, VA, SIZE, true);
            Map<Long, Long> before = Map.copyOf(pageTable(ctx));
            assertEquals(SIZE / TestGpu.PAGE, before.size());

            Fence move = locked(buf, () -> foreign.migrate(buf, VramExporter.Target.VRAM, "test: exporter moves it"));
            assertTrue(pageTable(ctx).isEmpty(), "moveNotify unmapped the GPU VM range at once");
            assertTrue(move.await(Duration.ofSeconds(10)));

            ctx.validate(h);
            assertEquals(SIZE / TestGpu.PAGE, pageTable(ctx).size(), "mapped again by the validate");
            byte[] got = new byte[SIZE];
            gpu(ctx, VA, got, false);
            assertArrayEquals(pattern(SIZE, 9), got);
            ctx.vmUnbind(VA, SIZE);
            ctx.closeBo(h);
        }
        buf.put();
    }

    /**
     * Lock order between an import's free (placement lock, then the exporter's reservation for the unmap and detach)
     * and the exporter's move (its reservation, then {@code move_notify} into the importer): as
     * {@code amdgpu_dma_buf_move_notify} only tries the VM's lock, the importer's move_notify must not wait for the
     * placement lock. Forced interleaving: the free waits for the reservation the test holds, then the test moves.
     */
    @Test
    void aForeignMoveWhileTheImportIsFreedDoesNotDeadlock() throws Exception {
        VramExporter foreign = new VramExporter(bufs, P2pDma.of(rig.machine), peer, 2, VramExporter.Policy.MIGRATE_TO_HOST);
        DmaBuf buf = foreign.allocate(SIZE);
        AccelContext ctx = rig.device.open();
        int h = ctx.primeImport(buf);
        Blocked.Call<Void> close;
        buf.resv().lock();
        try {
            close = Blocked.run("close import", () -> ctx.closeBo(h))
                    .awaitBlockedIn("dev.dmaplane.fence.impl.WwLockCore.lock", "dev.dmaplane.accel.impl.ImportedPages.free");
            Blocked.Call<Fence> move = Blocked.start("foreign move", () -> {
                buf.resv().lock();
                try {
                    return foreign.migrate(buf, VramExporter.Target.VRAM, "test: move during the free");
                } finally {
                    buf.resv().unlock();
                }
            });
            buf.resv().unlock();
            assertTrue(move.get().await(Duration.ofSeconds(10)), "the move went through");
        } finally {
            if (buf.resv().isHeldByCurrentThread()) {
                buf.resv().unlock();
            }
        }
        close.get();
        assertTrue(buf.attachments().isEmpty(), "the import detached");
        ctx.close();
        buf.put();
    }

    @Test
    void evictionOfAnExportedObjectIsAMoveWithMoveNotifyUnlessAPeerPinnedIt() {
        try (AccelContext ctx = rig.device.open(); AccelContext other = rig.device.open()) {
            int h = gpuFilled(ctx, 11);
            DmaBuf buf = ctx.primeExport(h);
            List<Attachment> told = new ArrayList<>();
            Attachment a = buf.attach(peer, new Importer(true, told::add));
            locked(buf, () -> {
                buf.pin(a);
                return null;
            });
            assertEquals(Errno.ENOMEM, errno(() -> other.createBo(2 * MIB, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM))),
                    "pinned for a peer-to-peer importer: not evictable");
            lockedRun(buf, () -> buf.unpin(a));
            DmaBufMapping m = locked(buf, () -> buf.map(a, DmaDirection.BIDIRECTIONAL));
            assertArrayEquals(pattern(SIZE, 11), deviceRead(peer, m));

            int big = other.createBo(2 * MIB, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));

            assertEquals(Placement.VISIBLE_VRAM, other.info(big).placement());
            assertEquals(Placement.HOST, ctx.info(h).placement(), "evicted to host memory");
            assertEquals(List.of(a), told, "the importer was told");
            assertEquals(DmaBufMapping.State.STALE, m.state(), "its old mapping retired once the move finished");
            DmaBufMapping again = locked(buf, () -> {
                buf.unmap(m);
                return buf.map(a, DmaDirection.BIDIRECTIONAL);
            });
            awaitKernel(buf);
            assertArrayEquals(pattern(SIZE, 11), deviceRead(peer, again), "the bytes moved with it");
            lockedRun(buf, () -> buf.unmap(again));
            buf.detach(a);
            buf.put();
        }
    }

    /**
     * {@code ttm_bo_validate} runs with the object's reservation held ({@code dma_resv_assert_held} in ttm_bo.c): a
     * user's validate of an exported object waits for an importer that holds the reservation (as rxe0 does mapping
     * the new pages after a move_notify) and then moves it; it does not give up as the LRU walk's trylock on other
     * objects does (the headline demo's eviction scenario failed on it under load).
     */
    @Test
    void validateOfAnExportedObjectWaitsForAnImporterHoldingItsReservation() throws Exception {
        try (AccelContext ctx = rig.device.open()) {
            int h = gpuFilled(ctx, 13);
            DmaBuf buf = ctx.primeExport(h);
            try (AccelContext other = rig.device.open()) {
                other.createBo(2 * MIB, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));
                assertEquals(Placement.HOST, ctx.info(h).placement(), "evicted to host memory");
            }
            Blocked.Call<Void> validate;
            buf.resv().lock();
            try {
                validate = Blocked.run("validate", () -> ctx.validate(h))
                        .awaitBlockedIn("dev.dmaplane.fence.impl.WwLockCore.lock",
                                "dev.dmaplane.accel.impl.ContextImpl.validate");
                assertEquals(Placement.HOST, ctx.info(h).placement(), "nothing moves while the importer holds it");
            } finally {
                buf.resv().unlock();
            }
            validate.get();
            awaitKernel(buf);
            assertEquals(Placement.VISIBLE_VRAM, ctx.info(h).placement(), "back once the importer let go");
            assertArrayEquals(pattern(SIZE, 13), read(ctx, h, 0, SIZE));
            buf.put();
        }
    }

    @Test
    void unregisterWithExportsAndImportsLiveLeavesNothing() {
        long frames = rig.machine.memory().allocatedFrames();
        long pins = rig.machine.memory().pinsOutstanding();
        AccelContext ctx = rig.device.open();
        int h = gpuFilled(ctx, 13);
        DmaBuf buf = ctx.primeExport(h);
        Attachment a = buf.attach(far, new Importer(true, x -> { }));
        DmaBufMapping m = locked(buf, () -> buf.map(a, DmaDirection.BIDIRECTIONAL));
        awaitKernel(buf);
        DmaBuf sys = new SystemHeap(bufs).allocate(SIZE);
        int imported = ctx.primeImport(sys);
        ctx.vmBind(imported, 0, 2 * VA, SIZE, false);
        int mappings = rig.machine.activeDmaMappings();
        assertTrue(mappings > 0);

        rig.handle.unregister();

        assertTrue(buf.isRevoked(), "the export was revoked");
        assertEquals(DmaBufMapping.State.UNMAPPED, m.state(), "the mapping still held was torn down");
        assertTrue(sys.attachments().isEmpty(), "the import detached");
        assertEquals(Errno.ENODEV, errno(() -> locked(buf, () -> buf.map(a, DmaDirection.BIDIRECTIONAL))));
        lockedRun(buf, () -> buf.unmap(m));
        buf.detach(a);
        buf.put();
        sys.put();
        assertEquals(0, rig.machine.activeDmaMappings(), "DMA mappings");
        assertEquals(frames, rig.machine.memory().allocatedFrames(), "host frames");
        assertEquals(pins, rig.machine.memory().pinsOutstanding(), "pins");
        assertEquals(2 * MIB, P2pDma.of(rig.machine).memory(rig.fn).orElseThrow().available(), "the visible window");
        assertEquals(AccelRig.VRAM, rig.device.vramAvailable(), "all VRAM");
        ctx.close();
    }
}
