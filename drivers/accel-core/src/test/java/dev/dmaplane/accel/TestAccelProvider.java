package dev.dmaplane.accel;

import dev.dmaplane.accel.spi.AccelProvider;
import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.BoMove;
import dev.dmaplane.accel.spi.EngineInfo;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.accel.spi.GpuVmOps;
import dev.dmaplane.accel.spi.VramInfo;
import dev.dmaplane.device.Device;
import dev.dmaplane.errno.Errno;
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
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The smallest accelerator driver the core accepts (issue 12's proof that the core is reusable): VRAM is the
 * function's memory BAR for the visible window and a private buffer beyond it, a move or clear is a CPU copy on
 * one "copy engine" thread (host pages through the function's bus master, so the IOMMU checks every access)
 * signalled with a fence, and a GPU VM's page table is a map from page to (aperture, address).
 */
final class TestAccelProvider implements AccelProvider, AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(TestAccelProvider.class);
    static final long PAGE = 4096;

    private final PciFunction fn;
    private final VramInfo vram;
    private final Bar.Memory window;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment beyond;
    private final FenceContext fences;
    private final ExecutorService engine;
    private volatile CountDownLatch gate = new CountDownLatch(0);
    final AtomicInteger moves = new AtomicInteger();
    volatile BoMove lastMove;
    /** Page tables by VM name: page VA -> the GPU address (aperture-tagged) it maps to. */
    final Map<String, TreeMap<Long, Long>> pageTables = new ConcurrentHashMap<>();

    TestAccelProvider(PciFunction fn, int bar, long totalSize) {
        this.fn = fn;
        Bar b = fn.bar(bar).orElseThrow();
        this.vram = new VramInfo(fn, bar, totalSize, b.size());
        this.window = b.memory();
        this.beyond = arena.allocate(Math.max(1, vram.invisibleSize()));
        this.fences = FenceContext.allocate("testaccel", fn.bdf() + " copy");
        this.engine = Executors.newSingleThreadExecutor(r -> new Thread(r, "testaccel-copy-" + fn.bdf()));
        fn.setMaster(true);
    }

    /** Holds every later move and clear until {@link #release()}. */
    void hold() {
        gate = new CountDownLatch(1);
    }

    void release() {
        gate.countDown();
    }

    @Override
    public String driverName() {
        return "testaccel";
    }

    @Override
    public Device dmaDevice() {
        return fn;
    }

    @Override
    public VramInfo vram() {
        return vram;
    }

    @Override
    public List<EngineInfo> engines() {
        return List.of(new EngineInfo("copy0", EngineInfo.EngineClass.COPY));
    }

    @Override
    public GpuVmOps createVm(String name) {
        TreeMap<Long, Long> pt = new TreeMap<>();
        pageTables.put(name, pt);
        return new GpuVmOps() {
            @Override
            public void map(long va, List<GpuRun> runs, boolean writable) {
                synchronized (pt) {
                    long at = va;
                    for (GpuRun r : runs) {
                        for (long o = 0; o < r.length(); o += PAGE, at += PAGE) {
                            pt.put(at, r.aperture().encode(r.address() + o));
                        }
                    }
                }
            }

            @Override
            public void unmap(long va, long length) {
                synchronized (pt) {
                    pt.subMap(va, va + length).clear();
                }
            }

            @Override
            public void destroy() {
                pageTables.remove(name);
            }
        };
    }

    @Override
    public Fence move(BoMove move) {
        moves.incrementAndGet();
        lastMove = move;
        return run(move.dependencies(), () -> {
            MemorySegment bytes = MemorySegment.ofArray(new byte[(int) move.size()]);
            transfer(move.from(), bytes, false);
            transfer(move.to(), bytes, true);
        });
    }

    @Override
    public Fence clear(String bo, List<GpuRun> runs) {
        long size = runs.stream().mapToLong(GpuRun::length).sum();
        return run(List.of(), () -> transfer(runs, MemorySegment.ofArray(new byte[(int) size]), true));
    }

    private Fence run(List<Fence> after, Runnable copy) {
        Fence f = fences.createFence();
        CountDownLatch g = gate;
        engine.execute(() -> {
            try {
                if (!Fences.awaitAll(after, Duration.ofSeconds(10)) || !g.await(10, TimeUnit.SECONDS)) {
                    f.setError(Errno.ETIME);
                } else {
                    copy.run();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                f.setError(Errno.EINTR);
            } catch (RuntimeException e) {
                LOG.error("{}: copy failed", fn.bdf(), e);
                f.setError(Errno.EIO);
            }
            f.signal();
        });
        return f;
    }

    /** Copies between {@code bytes} and the runs, in order, as the copy engine would. */
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
            } else if (r.address() < vram.visibleSize()) {
                if (toRuns) {
                    window.write(r.address(), part);
                } else {
                    window.read(r.address(), part);
                }
            } else {
                MemorySegment v = beyond.asSlice(r.address() - vram.visibleSize(), r.length());
                (toRuns ? v : part).copyFrom(toRuns ? part : v);
            }
            at += r.length();
        }
    }

    @Override
    public void close() throws InterruptedException {
        gate.countDown();
        engine.shutdown();
        if (!engine.awaitTermination(10, TimeUnit.SECONDS)) {
            throw new IllegalStateException("copy engine of " + fn.bdf() + " did not stop");
        }
        arena.close();
    }
}
