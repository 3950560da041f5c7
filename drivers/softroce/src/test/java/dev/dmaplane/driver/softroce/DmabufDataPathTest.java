package dev.dmaplane.driver.softroce;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.dmabuf.heap.VramExporter.Policy;
import dev.dmaplane.dmabuf.heap.VramExporter.Target;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.ResourceEntry;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.Eventually;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * dma-buf memory regions ({@code ibv_reg_dmabuf_mr(3)}, {@code drivers/infiniband/core/umem_dmabuf.c}) on the
 * Soft-RoCE HCAs with real bytes over the fabric: a system-heap buffer, and VRAM in the GPU's BAR 2 that the HCA
 * 0000:04:00.0 (rxe0, under the GPU's switch) reaches peer-to-peer by bus address. Moves while registered
 * ({@code move_notify}, then {@code ib_umem_dmabuf_map_pages} on the next access) under traffic, a second importer
 * behind another root port forcing the buffer out of VRAM, and hot unplug of the importing HCA.
 */
@Timeout(60)
class DmabufDataPathTest {
    private static final int SIZE = 1 << 20;
    private static final int CHUNK = 64 * 1024;
    private static final long IOVA = 0x5500_0000_0000L;

    private final Hcas h = new Hcas();
    private final DmaBufs bufs = DmaBufs.of(h.machine);
    private final PciFunction gpu = h.machine.pci().function("03:00.0");
    private final PciFunction hca0 = h.machine.pci().function("04:00.0");

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, Hcas.softroceThreads(), "no engine thread left");
    }

    private VramExporter vram(Policy policy) {
        return new VramExporter(bufs, P2pDma.of(h.machine), gpu, 2, policy);
    }

    private static byte[] cpuRead(DmaBuf buf, long off, int n) {
        byte[] out = new byte[n];
        buf.resv().lock();
        try {
            buf.cpuRead(off, MemorySegment.ofArray(out));
        } finally {
            buf.resv().unlock();
        }
        return out;
    }

    private static void cpuWrite(DmaBuf buf, long off, byte[] data) {
        buf.resv().lock();
        try {
            buf.cpuWrite(off, MemorySegment.ofArray(data));
        } finally {
            buf.resv().unlock();
        }
    }

    private static Fence startMove(VramExporter ex, DmaBuf buf, Target to) {
        buf.resv().lock();
        try {
            return ex.migrate(buf, to, "test moves it");
        } finally {
            buf.resv().unlock();
        }
    }

    private static void await(Fence f) {
        assertTrue(f.await(Duration.ofSeconds(10)), "the move finished");
        assertTrue(f.error().isEmpty(), "the move's copy was verified");
    }

    private static Map<String, String> res(Hcas.Host host, MemoryRegion mr) {
        return host.ctx.resources().stream().filter(r -> r.type().equals("mr") && r.handle() == mr.handle())
                .map(ResourceEntry::attrs).findFirst().orElseThrow();
    }

    private byte[] bar(long off, int n) {
        byte[] out = new byte[n];
        Bar b = gpu.bar(2).orElseThrow();
        b.memory().read(off, MemorySegment.ofArray(out));
        return out;
    }

    @Test
    void rdmaWriteFromHostMemoryIntoVramAndReadBackPeerToPeer() {
        VramExporter ex = vram(Policy.MIGRATE_TO_HOST);
        DmaBuf buf = ex.allocate(SIZE);
        int mappings = h.machine.activeDmaMappings(hca0);
        MemoryRegion mr = h.a.pd.regDmabufMr(0, SIZE, IOVA, buf, Hcas.ALL);
        assertEquals(Target.VRAM, ex.placement(buf).orElseThrow(), "04:00.0 reaches VRAM through the switch");
        long vramOff = ex.vramOffset(buf);
        QueuePair[] p = h.pair();

        byte[] data = Hcas.random(SIZE - 4096, 1);
        h.b.write(0, data);
        p[1].postSend(new SendWr.RdmaWrite(1, List.of(h.b.sge(0, data.length)), SIGNALED, IOVA + 4096, mr.rkey()));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.b.cq).status());
        assertArrayEquals(data, cpuRead(buf, 4096, data.length), "through the exporter's CPU view");
        assertArrayEquals(data, bar(vramOff + 4096, data.length), "in VRAM itself");

        byte[] head = Hcas.random(4096, 2);
        cpuWrite(buf, 0, head);
        p[1].postSend(new SendWr.RdmaRead(2, List.of(h.b.sge(2 << 20, SIZE)), SIGNALED, IOVA, mr.rkey()));
        WorkCompletion rd = Hcas.one(h.b.cq);
        assertEquals(WcStatus.SUCCESS, rd.status());
        assertEquals(WcOpcode.RDMA_READ, rd.opcode());
        byte[] back = h.b.read(2 << 20, SIZE);
        assertArrayEquals(head, Arrays.copyOf(back, 4096));
        assertArrayEquals(data, Arrays.copyOfRange(back, 4096, SIZE), "RDMA READ out of VRAM");
        assertEquals(Target.VRAM, ex.placement(buf).orElseThrow(), "it never left VRAM");
        assertTrue(h.machine.iommu().faults().isEmpty(), "bus addresses, no IOMMU involved");

        mr.destroy();
        assertTrue(buf.attachments().isEmpty(), "dereg detached");
        assertEquals(mappings, h.machine.activeDmaMappings(hca0), "and unmapped");
        assertTrue(h.machine.dmaDebug().reports().isEmpty(), h.machine.dmaDebug().reports().toString());
        buf.put();
    }

    @Test
    void aSystemHeapBufferOnTheOtherHcaTakesWritesAndReads() {
        DmaBuf buf = new SystemHeap(bufs).allocate(SIZE);
        MemoryRegion mr = h.b.pd.regDmabufMr(8192, SIZE - 8192, 0x2000, buf, Hcas.ALL);
        QueuePair[] p = h.pair();
        byte[] data = Hcas.random(300_000, 3);
        h.a.write(0, data);
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, data.length)), SIGNALED, 0x2000 + 5, mr.rkey()));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertArrayEquals(data, cpuRead(buf, 8192 + 5, data.length));
        p[0].postSend(new SendWr.RdmaRead(2, List.of(h.a.sge(1 << 20, data.length)), SIGNALED, 0x2000 + 5, mr.rkey()));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertArrayEquals(data, h.a.read(1 << 20, data.length));
        p[0].postSend(new SendWr.RdmaWrite(3, List.of(h.a.sge(0, 8)), SIGNALED, 0x2000 + SIZE - 8192 - 4, mr.rkey()));
        assertEquals(WcStatus.REM_ACCESS_ERR, Hcas.one(h.a.cq).status(), "past the region's end");
        mr.destroy();
        assertTrue(buf.attachments().isEmpty());
        buf.put();
        assertTrue(buf.isReleased());
    }

    /**
     * Six rounds of 1 MiB written in 64 KiB RDMA WRITEs while the exporter moves the buffer between VRAM and host
     * memory: each move waits for the write in progress, drops the mapping, and the next write maps again after the
     * move's copy; every byte of every round ends up in the buffer, wherever it is.
     */
    @Test
    void movesUnderTrafficRemapOnTheNextAccessAndLoseNoByte() {
        VramExporter ex = vram(Policy.MIGRATE_TO_HOST);
        DmaBuf buf = ex.allocate(SIZE);
        int mappings = h.machine.activeDmaMappings(hca0);
        MemoryRegion mr = h.a.pd.regDmabufMr(0, SIZE, IOVA, buf, Hcas.ALL);
        QueuePair[] p = h.pair();
        Target[] targets = {Target.HOST, Target.VRAM};
        for (int round = 0; round < 6; round++) {
            byte[] data = Hcas.random(SIZE, 100 + round);
            h.b.write(0, data);
            List<SendWr> wrs = new ArrayList<>();
            for (int c = 0; c < SIZE / CHUNK; c++) {
                wrs.add(new SendWr.RdmaWrite(round * 100L + c, List.of(h.b.sge((long) c * CHUNK, CHUNK)), SIGNALED,
                        IOVA + (long) c * CHUNK, mr.rkey()));
            }
            p[1].postSend(wrs);
            Fence move = startMove(ex, buf, targets[round % 2]);
            List<WorkCompletion> wc = Hcas.poll(h.b.cq, wrs.size());
            assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
            await(move);
            assertEquals(targets[round % 2], ex.placement(buf).orElseThrow());
            assertArrayEquals(data, cpuRead(buf, 0, SIZE), "round " + round + ": every byte landed");
        }
        Map<String, String> r = res(h.a, mr);
        assertEquals("6", r.get("dmabuf-moves"), "one move_notify per move");
        assertTrue(Long.parseLong(r.get("dmabuf-maps")) >= 6, "mapped again after the moves: " + r);
        assertTrue(h.machine.dmaDebug().reports().isEmpty(), "no stale address was used: " + h.machine.dmaDebug().reports());
        assertTrue(h.machine.iommu().faults().isEmpty(), h.machine.iommu().faults().toString());
        mr.destroy();
        assertTrue(buf.attachments().isEmpty());
        assertEquals(mappings, h.machine.activeDmaMappings(hca0), "nothing stays mapped");
        buf.put();
        // the last move's worker drops its own reference just after it signals the move fence
        Eventually.eventually(buf::isReleased, Duration.ofSeconds(10), "dma-buf " + buf.ino() + " released");
        assertEquals(16L << 30, ex.freeVram());
    }

    /**
     * rxe1 (0000:05:00.0, behind another root port) cannot reach VRAM: its registration makes the exporter move the
     * buffer to host memory, which is a {@code move_notify} for rxe0's region on the same buffer; both then write
     * into the host pages, rxe0's after mapping again.
     */
    @Test
    void aSecondImporterThatCannotReachVramMovesTheBufferUnderTheFirstRegion() {
        VramExporter ex = vram(Policy.MIGRATE_TO_HOST);
        DmaBuf buf = ex.allocate(SIZE);
        MemoryRegion near = h.a.pd.regDmabufMr(0, SIZE / 2, IOVA, buf, Hcas.ALL);
        assertEquals(Target.VRAM, ex.placement(buf).orElseThrow());
        MemoryRegion far = h.b.pd.regDmabufMr(SIZE / 2, SIZE / 2, IOVA, buf, Hcas.ALL);
        assertEquals(Target.HOST, ex.placement(buf).orElseThrow(), "the far HCA's map moved it out of VRAM");
        assertEquals("0", res(h.a, near).get("dmabuf-mapped"), "rxe0 was told and unmapped");
        assertTrue(buf.resv().await(ResvUsage.KERNEL, Duration.ofSeconds(10)));

        QueuePair[] p = h.pair();
        byte[] toNear = Hcas.random(SIZE / 2, 7);
        byte[] toFar = Hcas.random(SIZE / 2, 8);
        h.b.write(0, toNear);
        h.a.write(0, toFar);
        p[1].postSend(new SendWr.RdmaWrite(1, List.of(h.b.sge(0, SIZE / 2)), SIGNALED, IOVA, near.rkey()));
        p[0].postSend(new SendWr.RdmaWrite(2, List.of(h.a.sge(0, SIZE / 2)), SIGNALED, IOVA, far.rkey()));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.b.cq).status());
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertArrayEquals(toNear, cpuRead(buf, 0, SIZE / 2));
        assertArrayEquals(toFar, cpuRead(buf, SIZE / 2, SIZE / 2));
        assertEquals("1", res(h.a, near).get("dmabuf-mapped"), "mapped again, now by IOVA");
        assertTrue(h.machine.dmaDebug().reports().isEmpty(), h.machine.dmaDebug().reports().toString());
        near.destroy();
        far.destroy();
        assertTrue(buf.attachments().isEmpty());
        buf.put();
    }

    @Test
    void hotUnplugOfTheImportingHcaReleasesItsAttachmentAndMapping() {
        VramExporter ex = vram(Policy.MIGRATE_TO_HOST);
        DmaBuf buf = ex.allocate(SIZE);
        MemoryRegion mr = h.a.pd.regDmabufMr(0, SIZE, IOVA, buf, Hcas.ALL);
        QueuePair[] p = h.pair();
        h.b.write(0, Hcas.random(CHUNK, 9));
        p[1].postSend(new SendWr.RdmaWrite(1, List.of(h.b.sge(0, CHUNK)), SIGNALED, IOVA, mr.rkey()));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.b.cq).status());
        assertEquals(1, buf.attachments().size());

        h.machine.hotUnplug(hca0);
        assertTrue(h.a.ctx.isDisassociated());
        assertTrue(mr.isDestroyed());
        assertTrue(buf.attachments().isEmpty(), "disassociation detached the region");
        assertEquals(0, h.machine.activeDmaMappings(hca0));
        assertEquals(1, buf.refCount(), "only the exporter's reference is left");
        assertTrue(h.machine.dmaDebug().reports().isEmpty(), h.machine.dmaDebug().reports().toString());
        assertArrayEquals(Hcas.random(CHUNK, 9), cpuRead(buf, 0, CHUNK));
        await(startMove(ex, buf, Target.HOST));
        assertFalse(buf.isRevoked());
        buf.put();
    }

    @Test
    void unbindingTheDriverReleasesEveryDmabufRegion() {
        DmaBuf buf = new SystemHeap(bufs).allocate(SIZE);
        h.a.pd.regDmabufMr(0, SIZE, 0, buf, Hcas.ALL);
        h.b.pd.regDmabufMr(0, SIZE, 0, buf, Hcas.ALL);
        assertEquals(2, buf.attachments().size());
        h.machine.devices().unregisterDriver(h.driver);
        assertTrue(buf.attachments().isEmpty());
        assertEquals(0, h.machine.activeDmaMappings());
        assertEquals(1, buf.refCount());
        buf.put();
        assertTrue(buf.isReleased());
    }
}
