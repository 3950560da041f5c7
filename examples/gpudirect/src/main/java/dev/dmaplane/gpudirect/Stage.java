package dev.dmaplane.gpudirect;

import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.trace.TraceEvent;
import dev.dmaplane.trace.TraceKind;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.zip.CRC32C;

/**
 * What every scenario works with: the GPU user, rxe0 under the GPU's switch ({@code near}), rxe1 on the other root
 * port ({@code far}) with its source and read-back buffers, the payload (floats from the configuration's seed) and
 * the report.
 */
final class Stage implements AutoCloseable {
    static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    final Machine machine;
    final GpuDirectConfig cfg;
    final Printout out;
    final Gpu gpu;
    final Hca near;
    final Hca far;
    /** rxe1's buffer holding the payload, the source of every RDMA WRITE. */
    final Hca.HostBuffer src;
    /** rxe1's buffer RDMA READs land in. */
    final Hca.HostBuffer back;
    final byte[] payload;

    Stage(Machine machine, AccelCore accel, RdmaCore rdma, GpuDirectConfig cfg, Printout out) {
        this.machine = machine;
        this.cfg = cfg;
        this.out = out;
        this.payload = payload(cfg.size(), cfg.seed());
        Gpu g = null;
        Hca n = null;
        Hca f = null;
        try {
            g = new Gpu(accel, GpuDirect.GPU_DRIVER);
            n = new Hca(machine, rdma, GpuDirect.NEAR);
            f = new Hca(machine, rdma, GpuDirect.FAR);
            Hca.connect(n, f);
            this.src = f.host(cfg.size());
            this.back = f.host(cfg.size());
            f.put(src, 0, MemorySegment.ofArray(payload));
        } catch (RuntimeException e) {
            closeAll(f, n, g);
            throw e;
        }
        this.gpu = g;
        this.near = n;
        this.far = f;
    }

    /** Little-endian floats in [-1, 1) from {@code seed}: what SAXPY and the checksums work on. */
    static byte[] payload(long size, long seed) {
        float[] f = new float[(int) (size / 4)];
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = 0; i < f.length; i++) {
            f[i] = r.nextFloat(-1, 1);
        }
        byte[] b = new byte[(int) size];
        MemorySegment.copy(f, 0, MemorySegment.ofArray(b), F32, 0, f.length);
        return b;
    }

    static int crc32c(byte[] b, int offset, int length) {
        CRC32C c = new CRC32C();
        c.update(b, offset, length);
        return (int) c.getValue();
    }

    /** The bytes of rxe1's read-back buffer from {@code offset}. */
    byte[] readBack(long offset, int length) {
        byte[] b = new byte[length];
        far.get(back, offset, MemorySegment.ofArray(b));
        return b;
    }

    /** Whether {@code actual} equals {@code expected[from, from + actual.length)}. */
    static boolean same(byte[] actual, byte[] expected, int from) {
        return Arrays.equals(actual, 0, actual.length, expected, from, from + actual.length);
    }

    /** Prints the dma-buf decisions traced for {@code device} since {@code seq} (p2pdma's verdict, the map); returns them. */
    List<TraceEvent> traced(long seq, String device) {
        List<TraceEvent> events = machine.tracer().since(seq).stream()
                .filter(e -> e.kind() == TraceKind.DMA_BUF && device.equals(e.device())).toList();
        events.forEach(e -> out.note("trace #%d %s %s: %s", e.seq(), e.kind(), e.device(), e.detail()));
        return events;
    }

    DmaTraffic traffic() {
        return machine.dmaTraffic();
    }

    /** CPU time of the whole process so far, in nanoseconds (every thread: the HCAs', the GPU engines', ours). */
    static long cpuNanos() {
        return ProcessCpuClock.nanos();
    }

    @Override
    public void close() {
        closeAll(far, near, gpu);
    }

    private static void closeAll(AutoCloseable... all) {
        RuntimeException first = null;
        for (AutoCloseable c : all) {
            if (c == null) {
                continue;
            }
            try {
                c.close();
            } catch (Exception e) {
                if (first == null) {
                    first = e instanceof RuntimeException r ? r : new IllegalStateException(e);
                } else {
                    first.addSuppressed(e);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }
}
