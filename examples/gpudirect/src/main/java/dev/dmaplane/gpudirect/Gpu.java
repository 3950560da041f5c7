package dev.dmaplane.gpudirect;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.accel.AccelDevice;
import dev.dmaplane.accel.Command;
import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.Submission;
import dev.dmaplane.accel.spi.EngineInfo;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.Map;

/**
 * The demo's GPU user: one accel context ({@code open("/dev/accel/accel0")}) with its objects bound into its GPU VM
 * at addresses of their own, jobs submitted through the context and waited for, as a ROCm or CUDA runtime drives
 * its device.
 */
final class Gpu implements AutoCloseable {
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long VA_BASE = 1L << 32;
    private static final long VA_ALIGN = 2L << 20;
    private static final Duration WAIT = Duration.ofSeconds(30);

    final AccelDevice device;
    final AccelContext ctx;
    final int copyEngine;
    final int computeEngine;
    /** The GPU VA of each bound object. */
    private final Map<Integer, Long> vas = new HashMap<>();
    private long nextVa = VA_BASE;
    private final int result;

    Gpu(AccelCore core, String driverName) {
        this.device = core.devices().stream().filter(d -> d.driverName().equals(driverName)).findFirst()
                .orElseThrow(() -> new ErrnoException(Errno.ENODEV, "gpudirect: no accelerator of driver "
                        + driverName + " (is driver-gpu deployed?)"));
        this.copyEngine = engine(device, EngineInfo.EngineClass.COPY);
        this.computeEngine = engine(device, EngineInfo.EngineClass.COMPUTE);
        this.ctx = device.open();
        try {
            this.result = ctx.createBo(4096, Placement.HOST, EnumSet.of(Placement.HOST));
            bind(result);
        } catch (RuntimeException e) {
            ctx.close();
            throw e;
        }
    }

    private static int engine(AccelDevice d, EngineInfo.EngineClass c) {
        for (int i = 0; i < d.engines().size(); i++) {
            if (d.engines().get(i).engineClass() == c) {
                return i;
            }
        }
        throw new ErrnoException(Errno.ENODEV, "gpudirect: " + d.name() + " has no " + c + " engine");
    }

    /** A new object of {@code size} bytes in {@code placement} (host memory allowed when {@code evictable}), bound into the VM. */
    int create(long size, Placement placement, boolean evictable) {
        EnumSet<Placement> allowed = evictable ? EnumSet.of(placement, Placement.HOST) : EnumSet.of(placement);
        int h = ctx.createBo(size, placement, allowed);
        bind(h);
        return h;
    }

    private void bind(int handle) {
        long size = ctx.info(handle).size();
        long va = nextVa;
        ctx.vmBind(handle, 0, va, size, true);
        vas.put(handle, va);
        nextVa += (size + VA_ALIGN - 1) / VA_ALIGN * VA_ALIGN;
    }

    long va(int handle) {
        Long va = vas.get(handle);
        if (va == null) {
            throw new ErrnoException(Errno.ENOENT, "gpudirect: object " + handle + " is not bound");
        }
        return va;
    }

    /** CRC32C of {@code length} bytes of {@code handle} from {@code offset}, computed by the compute engine. */
    int crc32c(int handle, long offset, long length) {
        run(Submission.on(computeEngine, Command.Launch.of("crc32c", va(handle) + offset, va(result), length, 0))
                .reading(handle).writing(result));
        MemorySegment out = MemorySegment.ofArray(new byte[4]);
        ctx.read(result, 0, out);
        return out.get(U32, 0);
    }

    /** {@code y[i] = a * x[i] + y[i]} for {@code n} floats at {@code x} and {@code y} of {@code handle}, on the compute engine. */
    void saxpy(int handle, long x, long y, long n, float a) {
        run(Submission.on(computeEngine, Command.Launch.of("saxpy", va(handle) + x, va(handle) + y, n,
                Float.floatToRawIntBits(a) & 0xFFFF_FFFFL)).writing(handle));
    }

    /** Submits a copy on the copy engine and returns its fence without waiting. */
    Fence copy(int src, long srcOffset, int dst, long dstOffset, long length) {
        return ctx.submit(Submission.on(copyEngine, new Command.Copy(va(src) + srcOffset, va(dst) + dstOffset, length))
                .reading(src).writing(dst));
    }

    /** Submits and waits; a job that ended in error is that errno. */
    void run(Submission s) {
        await(ctx.submit(s));
    }

    static void await(Fence f) {
        if (!f.await(WAIT)) {
            throw new ErrnoException(Errno.ETIME, "gpudirect: job " + f + " did not finish in " + WAIT.toSeconds() + " s");
        }
        f.error().ifPresent(e -> {
            throw new ErrnoException(e, "gpudirect: job " + f + " failed with " + e);
        });
    }

    @Override
    public void close() {
        ctx.close();
    }
}
