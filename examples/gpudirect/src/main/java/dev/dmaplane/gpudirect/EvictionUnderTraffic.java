package dev.dmaplane.gpudirect;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.Placement;
import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.MemoryRegion;

import java.time.Duration;
import java.util.EnumSet;
import java.util.List;

/**
 * [3] Eviction under traffic (TTM's LRU eviction, {@code dma_buf_move_notify}, {@code ib_umem_dmabuf_map_pages}):
 * while rxe1 keeps RDMA-WRITEing the payload into an object rxe0 registered, another context fills VRAM; the object
 * is evicted to host memory (rxe0's mapping invalidated, its next access waiting for the move's fence and mapping
 * the new pages), then validated back into VRAM. The bytes stay right through both moves, and dma-debug sees no
 * access to a stale or unmapped address.
 */
final class EvictionUnderTraffic {
    static final long IOVA = 0x7b00_0000_0000L;
    private static final long FILL = 64L << 20;
    private static final Duration WAIT = Duration.ofSeconds(30);

    private EvictionUnderTraffic() {
    }

    static void run(Stage s) throws InterruptedException {
        Printout out = s.out;
        long size = s.cfg.size();
        out.section(Scenario.EVICTION, "eviction under traffic: rxe1 writes into a registered VRAM object while another "
                + "context fills VRAM");
        int bo = s.gpu.create(size, Placement.VISIBLE_VRAM, true);
        DmaBuf buf = null;
        MemoryRegion mr = null;
        try {
            buf = s.gpu.ctx.primeExport(bo);
            mr = s.near.dmabufMr(buf, 0, size, IOVA);
            int badAccesses = badAccesses(s);
            long seq = s.machine.tracer().lastSeq();
            PayloadWriter traffic = new PayloadWriter(s, IOVA, mr.rkey(), WAIT, "gpudirect rxe1 traffic");
            moveUnder(s, bo, traffic);
            long ino = buf.ino();
            long moves = s.machine.tracer().since(seq).stream()
                    .filter(e -> e.detail().contains("migrate dma-buf " + ino + " ")).count();
            out.note("%d rounds of %d MiB written while the object moved %d times (trace: 'migrate dma-buf %d')",
                    traffic.rounds(), size >> 20, moves, ino);
            out.check(moves >= 2, "the object left VRAM and came back: %d moves", moves);
            int crc = s.gpu.crc32c(bo, 0, size);
            out.check(crc == Stage.crc32c(s.payload, 0, (int) size), "the GPU's CRC32C after the traffic: %08x, "
                    + "equal to the payload's", crc);
            s.far.read(s.back.addr(), s.back.mr().lkey(), IOVA, mr.rkey(), size, s.cfg.message());
            out.check(Stage.same(s.readBack(0, (int) size), s.payload, 0), "rxe1 reads back every byte it wrote");
            out.check(badAccesses(s) == badAccesses, "dma-debug reported no access to an unmapped, revoked or "
                    + "read-only address");
        } finally {
            if (mr != null) {
                mr.destroy();
            }
            if (buf != null) {
                buf.put();
            }
            s.gpu.ctx.closeBo(bo);
        }
    }

    /** Runs the traffic while another context evicts {@code bo} and validate brings it back; rethrows its failure. */
    private static void moveUnder(Stage s, int bo, PayloadWriter traffic) throws InterruptedException {
        Printout out = s.out;
        long size = s.cfg.size();
        try {
            out.check(traffic.awaitRounds(1), "rxe1 writes %d MiB rounds into the object (rxe0's region, dynamic)",
                    size >> 20);
            int filled = fill(s, bo);
            out.check(s.gpu.ctx.info(bo).placement() == Placement.HOST, "after %d objects of %d MiB from another "
                    + "context the registered object was evicted to host memory (now %s)", filled, FILL >> 20,
                    s.gpu.ctx.info(bo).placement());
            int atEviction = traffic.rounds();
            out.check(traffic.awaitRounds(atEviction + 1), "rxe1's writes go on into the evicted object: round %d "
                    + "done", atEviction + 1);
            s.gpu.ctx.validate(bo);
            out.check(s.gpu.ctx.info(bo).placement() == Placement.VISIBLE_VRAM, "the other context closed; validate "
                    + "brought the object back into VRAM (now %s)", s.gpu.ctx.info(bo).placement());
            int atReturn = traffic.rounds();
            out.check(traffic.awaitRounds(atReturn + 1), "rxe1's writes go on into VRAM again: round %d done",
                    atReturn + 1);
        } finally {
            traffic.close();
        }
        if (traffic.failure() != null) {
            throw traffic.failure();
        }
    }

    /** Another context allocates VRAM until {@code bo} is evicted; returns how many objects it took, then closes. */
    private static int fill(Stage s, int bo) {
        int max = (int) (s.gpu.device.vram().totalSize() / FILL) + 8;
        try (AccelContext other = s.gpu.device.open()) {
            for (int i = 1; i <= max; i++) {
                try {
                    other.createBo(FILL, Placement.VRAM, EnumSet.of(Placement.VRAM, Placement.VISIBLE_VRAM));
                } catch (ErrnoException e) {
                    // the eviction made room, but not in one piece: the object still left VRAM
                    if (e.errno() != Errno.ENOMEM || s.gpu.ctx.info(bo).placement() == Placement.VISIBLE_VRAM) {
                        throw e;
                    }
                }
                if (s.gpu.ctx.info(bo).placement() != Placement.VISIBLE_VRAM) {
                    return i;
                }
            }
        }
        throw new ErrnoException(Errno.ENOMEM, "gpudirect: " + max + " objects of " + (FILL >> 20)
                + " MiB did not evict object " + bo);
    }

    private static int badAccesses(Stage s) {
        return (int) s.machine.dmaDebug().reports().stream().filter(r -> List.of(DmaDebugReport.Kind.ACCESS_UNMAPPED,
                DmaDebugReport.Kind.ACCESS_REVOKED, DmaDebugReport.Kind.ACCESS_READ_ONLY).contains(r.kind())).count();
    }
}
