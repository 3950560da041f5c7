package dev.dmaplane.accel;

import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.Fences;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * The hardware behind {@link TestAccelProvider}, as a device model would be: VRAM (the function's memory BAR for
 * the visible window, a private buffer beyond it), host memory through the function's bus master (so the IOMMU
 * checks every access), GPU page tables with the MMU's translation (a page not mapped is a GPU page fault), and
 * one engine thread that runs work in order, after its fences, behind a gate tests can close.
 */
final class TestGpu implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(TestGpu.class);
    static final long PAGE = 4096;

    private final PciFunction fn;
    private final long visible;
    private final Bar.Memory window;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment beyond;
    private final FenceContext fences;
    private final ExecutorService engine;
    private volatile CountDownLatch gate = new CountDownLatch(0);
    /** Page tables by VM name: page VA -> the GPU address (aperture-tagged) it maps to. */
    final Map<String, TreeMap<Long, Long>> pageTables = new ConcurrentHashMap<>();

    TestGpu(PciFunction fn, int bar, long totalSize) {
        this.fn = fn;
        Bar b = fn.bar(bar).orElseThrow();
        this.visible = b.size();
        this.window = b.memory();
        this.beyond = arena.allocate(Math.max(1, totalSize - visible));
        this.fences = FenceContext.allocate("testaccel", fn.bdf() + " engine");
        this.engine = Executors.newSingleThreadExecutor(r -> new Thread(r, "testaccel-engine-" + fn.bdf()));
        fn.setMaster(true);
    }

    /** Holds every later piece of work until {@link #release()}. */
    void hold() {
        gate = new CountDownLatch(1);
    }

    void release() {
        gate.countDown();
    }

    /**
     * Queues {@code work} after {@code after}; the fence signals when it ran, with its errno if it threw an
     * {@link ErrnoException}, {@code EIO} for another failure, {@code ETIME} if its fences or the gate took over 10 s.
     */
    Fence run(List<Fence> after, Runnable work) {
        Fence f = fences.createFence();
        CountDownLatch g = gate;
        engine.execute(() -> {
            try {
                if (!Fences.awaitAll(after, Duration.ofSeconds(10)) || !g.await(10, TimeUnit.SECONDS)) {
                    f.setError(Errno.ETIME);
                } else {
                    work.run();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                f.setError(Errno.EINTR);
            } catch (ErrnoException e) {
                LOG.debug("{}: engine work failed with {}", fn.bdf(), e.errno(), e);
                f.setError(e.errno());
            } catch (RuntimeException e) {
                LOG.error("{}: engine work failed", fn.bdf(), e);
                f.setError(Errno.EIO);
            }
            f.signal();
        });
        return f;
    }

    /** Copies between {@code bytes} and the runs, in order, as the engine's DMA would. */
    void transfer(List<GpuRun> runs, MemorySegment bytes, boolean toRuns) {
        long at = 0;
        for (GpuRun r : runs) {
            MemorySegment part = bytes.asSlice(at, r.length());
            if (r.aperture() == Aperture.SYSTEM) {
                if (toRuns) {
                    fn.dma().busMaster().write(r.address(), part);
                } else {
                    fn.dma().busMaster().read(r.address(), part);
                }
            } else if (r.address() < visible) {
                if (toRuns) {
                    window.write(r.address(), part);
                } else {
                    window.read(r.address(), part);
                }
            } else {
                MemorySegment v = beyond.asSlice(r.address() - visible, r.length());
                (toRuns ? v : part).copyFrom(toRuns ? part : v);
            }
            at += r.length();
        }
    }

    /** The GPU MMU: the runs behind {@code [va, va + length)} of page table {@code vm}; EFAULT at an unmapped page. */
    List<GpuRun> translate(String vm, long va, long length) {
        TreeMap<Long, Long> pt = pageTables.getOrDefault(vm, new TreeMap<>());
        List<GpuRun> runs = new ArrayList<>();
        synchronized (pt) {
            for (long at = va; at < va + length; at = (at & -PAGE) + PAGE) {
                Long pte = pt.get(at & -PAGE);
                ErrnoException.check(pte != null, Errno.EFAULT, String.format("%s: GPU page fault at VA %#x", vm, at));
                long n = Math.min(va + length, (at & -PAGE) + PAGE) - at;
                runs.add(new GpuRun(Aperture.of(pte), (pte & ~Aperture.SYSTEM_BIT) + (at & (PAGE - 1)), n));
            }
        }
        return runs;
    }

    @Override
    public void close() throws InterruptedException {
        gate.countDown();
        engine.shutdown();
        if (!engine.awaitTermination(10, TimeUnit.SECONDS)) {
            throw new IllegalStateException("engine of " + fn.bdf() + " did not stop");
        }
        arena.close();
    }
}
