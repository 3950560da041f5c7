package dev.dmaplane.gpudirect;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.Placement;
import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.driver.gpu.host.GpuHost;
import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.time.Duration;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 12's "100 evictions under RDMA traffic". rxe1 keeps RDMA-WRITEing a seeded payload into a VRAM object that
 * rxe0 registered as a dynamic importer ({@code ib_umem_dmabuf_get}, {@code drivers/infiniband/core/umem_dmabuf.c});
 * 100 times another context fills VRAM until TTM evicts the object to host memory ({@code ttm_bo_evict},
 * {@code drivers/gpu/drm/ttm/ttm_bo.c}) and {@code ttm_bo_validate} brings it back. Each move reaches rxe0 as
 * {@code move_notify} and its next access maps again behind the move's fence
 * ({@code Documentation/driver-api/dma-buf.rst}, "Dynamic importers" and the {@code DMA_RESV_USAGE_KERNEL} rule). Every
 * RDMA completion is SUCCESS, the GPU's CRC32C and rxe1's RDMA READ equal the payload at checkpoints with the writer
 * quiesced, dma-debug ({@code kernel/dma/debug.c}) sees no access to an unmapped, revoked or read-only address, and
 * nothing is left afterwards.
 */
class EvictionStormTest {
    private static final long MIB = 1L << 20;
    private static final int CYCLES = 100;
    /** Cycles between checkpoints: the writer stopped, then CRC32C and RDMA READ compared with the payload. */
    private static final int CHECKPOINT = 25;
    /** A 4 MiB object in 256 KiB writes; VRAM (512 MiB) filled with 64 MiB objects. */
    private static final GpuDirectConfig CFG = new GpuDirectConfig(4 * MIB, 256 * 1024, 4 * MIB, 1212,
            EnumSet.of(Scenario.EVICTION));
    private static final long FILL = 64 * MIB;
    private static final long IOVA = 0x7c00_0000_0000L;
    private static final Duration WAIT = Duration.ofSeconds(20);
    private static final Set<DmaDebugReport.Kind> BAD_ACCESS = EnumSet.of(DmaDebugReport.Kind.ACCESS_UNMAPPED,
            DmaDebugReport.Kind.ACCESS_REVOKED, DmaDebugReport.Kind.ACCESS_READ_ONLY);

    private static PayloadWriter writer(Stage s, MemoryRegion mr) {
        return new PayloadWriter(s, IOVA, mr.rkey(), WAIT, "eviction-storm rxe1 writer");
    }

    /** Waits (bounded) for a whole round that started after this call: two more rounds completed. */
    private static void awaitFreshRound(PayloadWriter w) throws InterruptedException {
        int target = w.rounds() + 2;
        boolean done = w.awaitRounds(target);
        if (w.failure() != null) {
            throw new AssertionError("an RDMA WRITE of rxe1 failed", w.failure());
        }
        assertTrue(done, "rxe1 completed no round in " + WAIT.toSeconds() + " s (" + w.rounds() + " so far)");
    }

    /** Stops after the round in progress, joins the thread, and fails the test if an RDMA WRITE failed. */
    private static void finish(PayloadWriter w) throws InterruptedException {
        w.close();
        if (w.failure() != null) {
            throw new AssertionError("an RDMA WRITE of rxe1 failed", w.failure());
        }
    }

    @Test
    void aHundredEvictionsUnderRdmaWritesKeepEveryByte() throws Exception {
        Path file = Path.of(EvictionStormTest.class.getResource("/gpudirect-machine.yaml").toURI());
        try (Machine m = Machine.boot(file); GpuHost gpu = GpuHost.on(m); SoftRoceHost rxe = SoftRoceHost.on(m)) {
            Leftovers before = Leftovers.of(m, gpu.core(), rxe.core());
            try (Stage s = new Stage(m, gpu.core(), rxe.core(), CFG, new Printout(line -> {
            }))) {
                storm(s);
            }
            assertEquals(before, Leftovers.of(m, gpu.core(), rxe.core()), "nothing left after the storm");
            assertEquals(List.of(), badAccesses(m), "dma-debug saw no stale or unmapped access");
        }
    }

    private static void storm(Stage s) throws Exception {
        long size = s.cfg.size();
        int bo = s.gpu.create(size, Placement.VISIBLE_VRAM, true);
        DmaBuf buf = s.gpu.ctx.primeExport(bo);
        MemoryRegion mr = null;
        AtomicInteger moves = new AtomicInteger();
        String migrate = "migrate dma-buf " + buf.ino() + " ";
        try (AutoCloseable sub = s.machine.tracer().subscribe(e -> {
            if (e.kind() == TraceKind.DMA_BUF && e.detail().startsWith(migrate)) {
                moves.incrementAndGet();
            }
        })) {
            mr = s.near.dmabufMr(buf, 0, size, IOVA);
            PayloadWriter writer = writer(s, mr);
            try {
                for (int cycle = 1; cycle <= CYCLES; cycle++) {
                    awaitFreshRound(writer);
                    evictByFilling(s, bo, cycle);
                    awaitFreshRound(writer);
                    s.gpu.ctx.validate(bo);
                    assertEquals(Placement.VISIBLE_VRAM, s.gpu.ctx.info(bo).placement(), "cycle " + cycle
                            + ": validate brought the object back into VRAM");
                    if (cycle % CHECKPOINT == 0) {
                        finish(writer);
                        checkBytes(s, bo, mr, cycle);
                        writer = writer(s, mr);
                    }
                }
                awaitFreshRound(writer);
                finish(writer);
            } finally {
                writer.close();
            }
            checkBytes(s, bo, mr, CYCLES);
            assertEquals(2 * CYCLES, moves.get(), "the object left VRAM and came back " + CYCLES + " times (trace: '"
                    + migrate + "...')");
        } finally {
            if (mr != null) {
                mr.destroy();
            }
            buf.put();
            s.gpu.ctx.closeBo(bo);
        }
    }

    /**
     * Another context allocates 64 MiB objects that may live only in VRAM until {@code bo}, the one object that
     * may go to host memory, is evicted there; then it closes, handing its VRAM back.
     */
    private static void evictByFilling(Stage s, int bo, int cycle) {
        int max = (int) (s.gpu.device.vram().totalSize() / FILL) + 1;
        try (AccelContext other = s.gpu.device.open()) {
            for (int i = 0; i < max && s.gpu.ctx.info(bo).placement() != Placement.HOST; i++) {
                try {
                    other.createBo(FILL, Placement.VRAM, EnumSet.of(Placement.VRAM, Placement.VISIBLE_VRAM));
                } catch (ErrnoException e) {
                    // evicting the object made room, but not 64 MiB in one piece
                    if (e.errno() != Errno.ENOMEM || s.gpu.ctx.info(bo).placement() != Placement.HOST) {
                        throw e;
                    }
                }
            }
        }
        assertEquals(Placement.HOST, s.gpu.ctx.info(bo).placement(), "cycle " + cycle + ": filling VRAM evicted "
                + "the registered object to host memory");
    }

    /** With the writer stopped: the GPU's CRC32C of the object and rxe1's RDMA READ of it are the payload. */
    private static void checkBytes(Stage s, int bo, MemoryRegion mr, int cycle) {
        int size = (int) s.cfg.size();
        assertEquals(Stage.crc32c(s.payload, 0, size), s.gpu.crc32c(bo, 0, size), "cycle " + cycle
                + ": the compute engine's CRC32C of the object is the payload's");
        s.far.read(s.back.addr(), s.back.mr().lkey(), IOVA, mr.rkey(), size, s.cfg.message());
        assertTrue(Stage.same(s.readBack(0, size), s.payload, 0), "cycle " + cycle
                + ": rxe1 reads back the payload it wrote");
        assertEquals(List.of(), badAccesses(s.machine), "cycle " + cycle
                + ": dma-debug saw no stale or unmapped access");
    }

    private static List<DmaDebugReport> badAccesses(Machine m) {
        return m.dmaDebug().reports().stream().filter(r -> BAD_ACCESS.contains(r.kind())).toList();
    }
}
