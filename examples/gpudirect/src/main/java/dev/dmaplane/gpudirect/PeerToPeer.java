package dev.dmaplane.gpudirect;

import dev.dmaplane.accel.Placement;
import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.rdma.verbs.MemoryRegion;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Comparator;

/**
 * [1] GPUDirect RDMA ({@code Documentation/driver-api/dma-buf.rst}, {@code ibv_reg_dmabuf_mr(3)}): a VRAM object
 * exported with PRIME, registered on rxe0 (under the GPU's switch, so its map is the BAR's bus addresses), rxe1
 * RDMA-WRITEs the payload into it and READs it back, the GPU checksums and runs SAXPY on what arrived; then the
 * bounce path delivers the same bytes through host memory, pipelined, for the comparison.
 */
final class PeerToPeer {
    static final long IOVA = 0x7f00_0000_0000L;
    static final long SUB_IOVA = 0x7e00_0000_0000L;
    static final long BOUNCE_IOVA = 0x7d00_0000_0000L;
    private static final float A = 2.0f;
    private static final int SLOTS = 2;
    /** Untimed rounds of each path before the measured ones, as perftest warms up: the JIT compiles the data path. */
    private static final int WARM_UP = 2;
    /** Measured rounds of each path; the one of median wall time is reported (a round takes some tens of ms). */
    private static final int MEASURED = 3;

    private PeerToPeer() {
    }

    /** The object the later scenarios reuse: registered on rxe0, holding {@link #expected} bytes. */
    record Shared(int handle, DmaBuf buf, MemoryRegion mr, byte[] expected) {
    }

    static Shared run(Stage s) {
        GpuDirectConfig cfg = s.cfg;
        Printout out = s.out;
        long size = cfg.size();
        out.section(Scenario.GPUDIRECT, "GPUDirect RDMA: a VRAM object exported with PRIME, registered on rxe0 with "
                + "ibv_reg_dmabuf_mr, written and read by rxe1, computed on by the GPU");
        int bo = s.gpu.create(size, Placement.VISIBLE_VRAM, true);
        long seq = s.machine.tracer().lastSeq();
        DmaBuf buf = s.gpu.ctx.primeExport(bo);
        MemoryRegion mr = s.near.dmabufMr(buf, 0, size, IOVA);
        out.note("%s: object %d of %d MiB in %s exported as dma-buf %d; rxe0 registered it: lkey %#x rkey %#x, iova %#x",
                s.gpu.device.name(), bo, size >> 20, s.gpu.ctx.info(bo).placement(), buf.ino(), mr.lkey(), mr.rkey(), IOVA);
        s.traced(seq, GpuDirect.NEAR_BDF);
        out.check(s.gpu.ctx.info(bo).placement() == Placement.VISIBLE_VRAM,
                "the object stays in VRAM: rxe0 reaches the BAR through the switch (p2pdma BUS_ADDR)");
        subRange(s, buf, bo);

        Measured m = measure(s, "p2p", () -> s.far.write(s.src.addr(), s.src.mr().lkey(), IOVA, mr.rkey(), size,
                cfg.message()));
        Transfer p2p = m.transfer();
        DmaTraffic dt = m.traffic();
        out.transfer(p2p);
        out.note("rxe1 RDMA-WROTE %d MiB in %d messages of %d KiB (after %d rounds of warm-up, the median of %d): "
                        + "%.0f MiB/s, %.0f ms CPU per GiB", size >> 20, size / cfg.message(), cfg.message() >> 10,
                WARM_UP, MEASURED, p2p.mibPerSecond(), p2p.cpuMillisPerGiB());
        out.note("the bus counted: %d bytes read from RAM (rxe1's source), %d bytes written peer-to-peer, %d bytes "
                + "written into RAM", dt.ramReadBytes(), dt.peerWriteBytes(), dt.ramWriteBytes());
        out.check(dt.ramWriteBytes() == 0, "host bytes written during the transfer: %d", dt.ramWriteBytes());
        out.check(dt.peerWriteBytes() == size, "bytes moved peer-to-peer into the GPU's BAR: %d of %d",
                dt.peerWriteBytes(), size);

        s.far.read(s.back.addr(), s.back.mr().lkey(), IOVA, mr.rkey(), size, cfg.message());
        out.check(Stage.same(s.readBack(0, (int) size), s.payload, 0),
                "rxe1 RDMA-READ the %d MiB back from VRAM: every byte equal to what it wrote", size >> 20);

        int expectCrc = Stage.crc32c(s.payload, 0, (int) size);
        int crc = s.gpu.crc32c(bo, 0, size);
        out.check(crc == expectCrc, "the GPU's CRC32C of what arrived: %08x (the CPU's over rxe1's source: %08x)",
                crc, expectCrc);

        byte[] expected = s.payload.clone();
        long n = size / 8;
        saxpyReference(expected, size / 2, n);
        s.gpu.saxpy(bo, 0, size / 2, n, A);
        s.far.read(s.back.addr(), s.back.mr().lkey(), IOVA + size / 2, mr.rkey(), size / 2, cfg.message());
        out.check(Stage.same(s.readBack(0, (int) (size / 2)), expected, (int) (size / 2)),
                "SAXPY y = %.1f x + y on the GPU over %d floats, read by rxe1 peer-to-peer: bit-exact against Java", A, n);

        bounce(s, p2p);
        return new Shared(bo, buf, mr, expected);
    }

    /** A region over part of the dma-buf: its byte 0 is the object's byte {@code offset}. */
    private static void subRange(Stage s, DmaBuf buf, int bo) {
        long offset = s.cfg.size() / 4;
        long length = 1L << 20;
        MemoryRegion sub = s.near.dmabufMr(buf, offset, length, SUB_IOVA);
        try {
            byte[] marker = Stage.payload(4096, s.cfg.seed() + 1);
            s.far.put(s.back, 0, MemorySegment.ofArray(marker));
            s.far.write(s.back.addr(), s.back.mr().lkey(), SUB_IOVA + 8192, sub.rkey(), marker.length, marker.length);
            byte[] seen = new byte[marker.length];
            s.gpu.ctx.read(bo, offset + 8192, MemorySegment.ofArray(seen));
            s.out.check(Arrays.equals(seen, marker), "a second region over %d KiB at offset %d MiB of the "
                    + "same dma-buf: rxe1's write at its byte 8192 is the object's byte %#x", length >> 10,
                    offset >> 20, offset + 8192);
        } finally {
            sub.destroy();
        }
    }

    /** {@code y = A * x + y} over the second half of {@code b}, as the kernel computes it. */
    private static void saxpyReference(byte[] b, long y, long n) {
        MemorySegment m = MemorySegment.ofArray(b);
        for (long i = 0; i < n; i++) {
            m.set(Stage.F32, y + 4 * i, A * m.get(Stage.F32, 4 * i) + m.get(Stage.F32, y + 4 * i));
        }
    }

    /**
     * The bounce path: rxe1 RDMA-WRITEs each chunk into a host object registered on rxe0, the GPU's copy engine
     * copies it into VRAM; two slots, so the HCA fills one while the engine drains the other.
     */
    private static void bounce(Stage s, Transfer p2p) {
        GpuDirectConfig cfg = s.cfg;
        long size = cfg.size();
        long chunk = cfg.bounceChunk();
        int dst = s.gpu.create(size, Placement.VRAM, true);
        int bounce = s.gpu.create(SLOTS * chunk, Placement.HOST, false);
        DmaBuf bb = s.gpu.ctx.primeExport(bounce);
        MemoryRegion bmr = null;
        try {
            bmr = s.near.dmabufMr(bb, 0, SLOTS * chunk, BOUNCE_IOVA);
            MemoryRegion slots = bmr;
            Measured m = measure(s, "bounce", () -> pipeline(s, bounce, slots, dst));
            Transfer t = m.transfer();
            DmaTraffic dt = m.traffic();
            s.out.transfer(t);
            s.out.note("bounce path: rxe1 into a %d MiB host object registered on rxe0 (two slots), the copy engine into "
                    + "VRAM, %d steps of %d MiB (after %d rounds of warm-up, the median of %d): %.0f MiB/s, %.0f ms "
                    + "CPU per GiB", SLOTS * chunk >> 20, size / chunk, chunk >> 20, WARM_UP, MEASURED, t.mibPerSecond(),
                    t.cpuMillisPerGiB());
            long fenceWords = dt.ramWriteBytes() - size;
            s.out.check(fenceWords >= 0 && fenceWords < 4096, "host bytes written on the bounce path: %d, each "
                    + "delivered byte once, and %d bytes of the GPU's fence write-backs", dt.ramWriteBytes(), fenceWords);
            int crc = s.gpu.crc32c(dst, 0, size);
            s.out.check(crc == Stage.crc32c(s.payload, 0, (int) size), "the GPU's CRC32C of what the bounce path "
                    + "delivered: %08x, the same", crc);
            s.out.note("peer-to-peer delivered %.2fx the bounce path's bandwidth with %.2fx its CPU time per GiB; host "
                            + "bytes per delivered byte %.2f vs %.2f", p2p.mibPerSecond() / t.mibPerSecond(),
                    p2p.cpuMillisPerGiB() / t.cpuMillisPerGiB(), p2p.hostBytesPerByte(), t.hostBytesPerByte());
        } finally {
            if (bmr != null) {
                bmr.destroy();
            }
            bb.put();
            s.gpu.ctx.closeBo(bounce);
            s.gpu.ctx.closeBo(dst);
        }
    }

    /** One delivery through the bounce object: each chunk RDMA-written into a slot, then copied into VRAM by the GPU. */
    private static void pipeline(Stage s, int bounce, MemoryRegion bmr, int dst) {
        long chunk = s.cfg.bounceChunk();
        Fence[] slot = new Fence[SLOTS];
        for (long i = 0; i < s.cfg.size() / chunk; i++) {
            int k = (int) (i % SLOTS);
            if (slot[k] != null) {
                Gpu.await(slot[k]);
            }
            s.far.write(s.src.addr() + i * chunk, s.src.mr().lkey(), BOUNCE_IOVA + k * chunk, bmr.rkey(), chunk,
                    s.cfg.message());
            slot[k] = s.gpu.copy(bounce, k * chunk, dst, i * chunk, chunk);
        }
        for (Fence f : slot) {
            if (f != null) {
                Gpu.await(f);
            }
        }
    }

    /** A measured delivery and the bus traffic it made. */
    private record Measured(Transfer transfer, DmaTraffic traffic) {
    }

    /**
     * Runs {@code delivery} {@link #WARM_UP} times untimed, then {@link #MEASURED} times measured (wall and CPU time,
     * bus traffic), and returns the round of median wall time.
     */
    private static Measured measure(Stage s, String path, Runnable delivery) {
        for (int round = 0; round < WARM_UP; round++) {
            delivery.run();
        }
        Measured[] rounds = new Measured[MEASURED];
        for (int round = 0; round < MEASURED; round++) {
            DmaTraffic t0 = s.traffic();
            long cpu0 = Stage.cpuNanos();
            long n0 = System.nanoTime();
            delivery.run();
            long nanos = System.nanoTime() - n0;
            long cpu = Stage.cpuNanos() - cpu0;
            DmaTraffic dt = s.traffic().minus(t0);
            rounds[round] = new Measured(new Transfer(path, s.cfg.size(), nanos, cpu, dt.ramWriteBytes(),
                    dt.peerWriteBytes()), dt);
        }
        Arrays.sort(rounds, Comparator.comparingLong(m -> m.transfer().nanos()));
        return rounds[MEASURED / 2];
    }
}
