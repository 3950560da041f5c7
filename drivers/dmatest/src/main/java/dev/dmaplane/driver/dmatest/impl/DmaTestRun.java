package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One device under test: the source and destination buffers probe allocated, the results, and the driver's
 * {@code remove}. The source block is the driver's own (freed by {@link #remove()}); the destination block is
 * device-managed ({@code devm_}-style, freed by the device's devres after remove). DMA mappings live only inside
 * one transfer, so nothing is mapped when remove runs.
 */
final class DmaTestRun implements BoundDevice {
    private static final Logger LOG = LoggerFactory.getLogger(DmaTestRun.class);

    /** What one run found. {@code dma} says how the copies went: "ok", "skipped: ...", or the first error. */
    record Result(int tests, int failures, long bytesVerified, String dma) {
    }

    private final Device device;
    private final HostMemory memory;
    private final Parameters params;
    private final long srcPfn;
    private final long dstPfn;
    private final Result result;
    private final AtomicBoolean removed = new AtomicBoolean();

    private DmaTestRun(Device device, HostMemory memory, Parameters params, long srcPfn, long dstPfn, Result result) {
        this.device = device;
        this.memory = memory;
        this.params = params;
        this.srcPfn = srcPfn;
        this.dstPfn = dstPfn;
        this.result = result;
    }

    /** Test parameters, as dmatest's module parameters. */
    record Parameters(int bufferOrder, int iterations, long seed) {
        Parameters {
            if (bufferOrder < 0 || bufferOrder > HostMemory.MAX_ORDER) {
                throw new ErrnoException(Errno.EINVAL, "buffer order must be 0.." + HostMemory.MAX_ORDER + ", not " + bufferOrder);
            }
            if (iterations < 1) {
                throw new ErrnoException(Errno.EINVAL, "iterations must be >= 1, not " + iterations);
            }
        }

        long bufferSize() {
            return HostMemory.PAGE_SIZE << bufferOrder;
        }
    }

    /** The probe: allocates and fills the buffers, runs the transfers, keeps the buffers until remove. */
    static DmaTestRun probe(Device device, HostMemory memory, Parameters params) {
        long src = memory.allocPages(params.bufferOrder());
        try {
            long dst = memory.allocPages(params.bufferOrder());
            device.devres().add("dmatest destination buffer (pfn 0x" + Long.toHexString(dst) + ")", () -> memory.putPage(dst));
            Result r = run(device, memory, params, src, dst);
            LOG.info("dmatest {}: summary {} tests, {} failures, {} bytes verified; device copies: {}", device.name(),
                    r.tests(), r.failures(), r.bytesVerified(), r.dma());
            return new DmaTestRun(device, memory, params, src, dst, r);
        } catch (RuntimeException | Error e) {
            memory.putPage(src); // the destination goes with the devres of the failed probe
            throw e;
        }
    }

    /**
     * The test proper. With a DMA API, each iteration fills both buffers, picks a random area, has the device copy
     * it ({@link #deviceCopy}) and checks every byte of both buffers. Without one (a device with no DMA capability,
     * or a framework whose DMA API is not wired to the device yet) only the CPU pattern check runs and the device
     * copies are reported as skipped.
     */
    private static Result run(Device device, HostMemory memory, Parameters p, long src, long dst) {
        long size = p.bufferSize();
        long srcPhys = src << HostMemory.PAGE_SHIFT;
        long dstPhys = dst << HostMemory.PAGE_SHIFT;
        MemorySegment srcBuf = memory.slice(srcPhys, size);
        MemorySegment dstBuf = memory.slice(dstPhys, size);
        DmaApi dma;
        try {
            dma = device.dma();
        } catch (ErrnoException e) {
            if (e.errno() != Errno.ENODEV) {
                throw e;
            }
            Patterns.fill(srcBuf, 0, size, true);
            Patterns.fill(dstBuf, 0, size, false);
            long errors = Patterns.verify(srcBuf, 0, size, true) + Patterns.verify(dstBuf, 0, size, false);
            return new Result(1, errors == 0 ? 0 : 1, 2 * size, "skipped (" + e.getMessage() + ")");
        }
        Random rnd = new Random(p.seed());
        int failures = 0;
        long verified = 0;
        String firstError = null;
        for (int i = 0; i < p.iterations(); i++) {
            long len = 1 + rnd.nextLong(size);
            long srcOff = rnd.nextLong(size - len + 1);
            long dstOff = rnd.nextLong(size - len + 1);
            Patterns.fill(srcBuf, srcOff, len, true);
            Patterns.fill(dstBuf, dstOff, len, false);
            try {
                deviceCopy(dma, srcPhys + srcOff, dstPhys + dstOff, len);
            } catch (ErrnoException e) {
                failures++;
                firstError = firstError == null ? e.getMessage() : firstError;
                LOG.warn("dmatest {}: test #{}: copy of {} bytes failed: {}", device.name(), i, len, e.getMessage());
                continue;
            }
            long errors = Patterns.verifyDestination(dstBuf, srcOff, dstOff, len) + Patterns.verify(srcBuf, srcOff, len, true);
            verified += 2 * size;
            if (errors > 0) {
                failures++;
                firstError = firstError == null ? errors + " bytes wrong after copy" : firstError;
                LOG.warn("dmatest {}: test #{}: {} wrong bytes (src_off=0x{} dst_off=0x{} len=0x{})", device.name(), i,
                        errors, Long.toHexString(srcOff), Long.toHexString(dstOff), Long.toHexString(len));
            }
        }
        return new Result(p.iterations(), failures, verified, failures == 0 ? "ok" : "failed: " + firstError);
    }

    /**
     * The DMA part: maps both ranges for the device ({@code dma_map_single}), has the device read the source and
     * write the destination through its bus master as a DMA engine's memcpy does, syncs for the CPU and unmaps.
     * Nothing stays mapped when it returns, whether the copy worked or not.
     */
    static void deviceCopy(DmaApi dma, long srcPhys, long dstPhys, long len) {
        long srcBus = dma.mapSingle(srcPhys, len, DmaDirection.TO_DEVICE);
        try {
            long dstBus = dma.mapSingle(dstPhys, len, DmaDirection.FROM_DEVICE);
            try {
                BusMaster engine = dma.busMaster();
                try (Arena fifo = Arena.ofConfined()) {
                    MemorySegment data = fifo.allocate(len);
                    engine.read(srcBus, data);
                    engine.write(dstBus, data);
                }
                dma.syncSingleForCpu(dstBus, len, DmaDirection.FROM_DEVICE);
            } finally {
                dma.unmapSingle(dstBus, len, DmaDirection.FROM_DEVICE);
            }
        } finally {
            dma.unmapSingle(srcBus, len, DmaDirection.TO_DEVICE);
        }
    }

    Result result() {
        return result;
    }

    long sourcePfn() {
        return srcPfn;
    }

    long destinationPfn() {
        return dstPfn;
    }

    @Override
    public void remove() {
        if (!removed.compareAndSet(false, true)) {
            return;
        }
        memory.putPage(srcPfn);
        LOG.info("dmatest {}: remove: source buffer freed ({} bytes), destination left to devres", device.name(),
                params.bufferSize());
    }
}
