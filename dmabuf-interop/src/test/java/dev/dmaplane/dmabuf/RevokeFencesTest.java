package dev.dmaplane.dmabuf;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.dmabuf.heap.VramExporter.Policy;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MachineFiles;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.Blocked;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.List;

import static dev.dmaplane.dmabuf.ResvLocked.locked;
import static dev.dmaplane.dmabuf.ResvLocked.lockedGet;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 15's rule for revoke and stop with fences pending, as include/linux/dma-resv.h documents
 * {@code enum dma_resv_usage} (BOOKKEEP fences too stand for DMA still running on the buffer) and as TTM frees or
 * moves a backing only after {@code ttm_bo_wait_ctx} of every usage ({@code ttm_bo.c} eviction and delayed delete):
 * the backing is freed only after every fence signalled, and until then the importers' mappings keep working.
 */
class RevokeFencesTest {
    private static final int SIZE = 64 * 1024;

    private final MachineFiles files = new MachineFiles();
    private final Machine m = files.boot();
    private final DmaBufs bufs = DmaBufs.of(m);
    private final PciFunction gpu = m.pci().function("03:00.0");
    /** Under the GPU's switch: BUS_ADDR peer-to-peer. */
    private final PciFunction hca = m.pci().function("04:00.0");
    private final FenceContext work = FenceContext.allocate("test", "hca work");

    RevokeFencesTest() {
        hca.setMaster(true);
        hca.dma().setDmaMask(-1L);
    }

    @AfterEach
    void close() {
        files.close();
    }

    private static byte[] pattern(int seed) {
        byte[] b = new byte[SIZE];
        for (int i = 0; i < SIZE; i++) {
            b[i] = (byte) (i * 13 + seed);
        }
        return b;
    }

    private byte[] deviceRead(DmaBufMapping map) {
        byte[] out = new byte[(int) map.length()];
        long off = 0;
        for (DmaSegment s : map.segments()) {
            hca.dma().busMaster().read(s.dmaAddress(), MemorySegment.ofArray(out).asSlice(off, s.length()));
            off += s.length();
        }
        return out;
    }

    private Fence pending(DmaBuf buf, ResvUsage usage) {
        Fence f = work.createFence();
        locked(buf, () -> {
            buf.resv().reserveFences(1);
            buf.resv().addFence(f, usage);
        });
        return f;
    }

    private DmaBuf filledVram(VramExporter ex, int seed) {
        DmaBuf buf = ex.allocate(SIZE);
        locked(buf, () -> buf.cpuWrite(0, MemorySegment.ofArray(pattern(seed))));
        return buf;
    }

    @Test
    void revokeFreesVramOnlyAfterABookkeepFenceAndTheMappingWorksUntilThen() {
        VramExporter ex = new VramExporter(bufs, P2pDma.of(m), gpu, 2, Policy.MIGRATE_TO_HOST);
        long total = ex.freeVram();
        DmaBuf buf = filledVram(ex, 3);
        Attachment a = buf.attach(hca, new Importer(true, x -> { }));
        DmaBufMapping map = lockedGet(buf, () -> buf.map(a, DmaDirection.BIDIRECTIONAL));
        assertEquals(gpu.bar(2).orElseThrow().address() + ex.vramOffset(buf), map.segments().getFirst().dmaAddress(),
                "BUS_ADDR under the switch");
        Fence bookkeep = pending(buf, ResvUsage.BOOKKEEP);

        locked(buf, () -> ex.revoke(buf, "test: GPU reset"));

        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class,
                () -> locked(buf, () -> buf.map(a, DmaDirection.BIDIRECTIONAL))).errno(), "maps fail at once");
        assertEquals(total - SIZE, ex.freeVram(), "the VRAM stays allocated while the BOOKKEEP fence is pending");
        assertNotEquals(DmaBufMapping.State.STALE, map.state());
        assertArrayEquals(pattern(3), deviceRead(map), "the importer's DMA the fence covers still works");

        bookkeep.signal();

        assertEquals(total, ex.freeVram(), "freed once the fence signalled");
        assertEquals(DmaBufMapping.State.STALE, map.state());
        assertThrows(DmaFaultException.class, () -> deviceRead(map), "device access cut");
        locked(buf, () -> buf.unmap(map));
        buf.detach(a);
        buf.put();
    }

    @Test
    void dmaBufRevokeRetiresMappingsOnlyAfterEveryFence() {
        DmaBuf buf = new SystemHeap(bufs).allocate(SIZE);
        locked(buf, () -> buf.cpuWrite(0, MemorySegment.ofArray(pattern(5))));
        Attachment a = buf.attach(hca, null);
        DmaBufMapping map = buf.mapUnlocked(a, DmaDirection.BIDIRECTIONAL);
        Fence read = pending(buf, ResvUsage.READ);
        Fence bookkeep = pending(buf, ResvUsage.BOOKKEEP);

        locked(buf, () -> buf.revoke("test: exporter revoke"));

        assertTrue(buf.isRevoked());
        read.signal();
        assertNotEquals(DmaBufMapping.State.STALE, map.state(), "a BOOKKEEP fence is still pending");
        assertArrayEquals(pattern(5), deviceRead(map));
        bookkeep.signal();
        assertEquals(DmaBufMapping.State.STALE, map.state());
        assertThrows(DmaFaultException.class, () -> deviceRead(map));
        buf.unmapUnlocked(map);
        buf.detach(a);
        buf.put();
    }

    @Test
    void stopWaitsForTheFencesWithoutTheReservationLock() throws Exception {
        VramExporter ex = new VramExporter(bufs, P2pDma.of(m), gpu, 2, Policy.MIGRATE_TO_HOST);
        long total = ex.freeVram();
        DmaBuf buf = filledVram(ex, 7);
        Attachment a = buf.attach(hca, new Importer(true, x -> { }));
        DmaBufMapping map = lockedGet(buf, () -> buf.map(a, DmaDirection.BIDIRECTIONAL));
        Fence bookkeep = pending(buf, ResvUsage.BOOKKEEP);

        Blocked.Call<Integer> stop = Blocked.start("stop", () -> ex.stop("test: unbind"))
                .awaitBlockedIn("dev.dmaplane.fence.impl.FenceCore.await", "dev.dmaplane.fence.Fences.awaitAll",
                        "dev.dmaplane.dmabuf.heap.P2pExporter.stop");
        assertTrue(buf.resv().tryLock(), "the stop waits without the reservation lock");
        buf.resv().unlock();
        assertArrayEquals(pattern(7), deviceRead(map), "the mapping works until the fence signals");
        assertEquals(total - SIZE, ex.freeVram());

        bookkeep.signal();

        assertEquals(1, stop.get(), "the mapping still held is reported and torn down");
        assertEquals(total, ex.freeVram());
        assertEquals(List.of(), m.iommu().faults());
        locked(buf, () -> buf.unmap(map));
        buf.detach(a);
        buf.put();
        assertTrue(bookkeep.await(Duration.ofSeconds(1)));
    }
}
