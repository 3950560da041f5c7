package dev.dmaplane.accel;

import dev.dmaplane.accel.sched.SchedBackend;
import dev.dmaplane.accel.sched.SchedJob;
import dev.dmaplane.accel.sched.Scheduler;
import dev.dmaplane.accel.sched.SchedulerConfig;
import dev.dmaplane.accel.sched.TimeoutStatus;
import dev.dmaplane.accel.spi.AccelProvider;
import dev.dmaplane.accel.spi.BoMove;
import dev.dmaplane.accel.spi.EngineInfo;
import dev.dmaplane.accel.spi.GpuJob;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.accel.spi.GpuVmOps;
import dev.dmaplane.accel.spi.VramInfo;
import dev.dmaplane.device.Device;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.pci.PciFunction;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.List;
import java.util.TreeMap;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The smallest accelerator driver the core accepts (issue 12's proof that the core is reusable), on the hardware
 * of {@link TestGpu}: a move or clear is a copy on its engine signalled with a fence, a GPU VM's page table maps
 * pages to (aperture, address), and jobs come through a drm_sched scheduler per engine onto its one engine thread: copy and fill
 * through the VM (an unmapped page faults: EFAULT) and one kernel, {@code nop()}. A job timeout resets the engine
 * as {@code sched_main.c} documents, so the hung job ends with ETIME.
 */
final class TestAccelProvider implements AccelProvider, SchedBackend, AutoCloseable {
    private final PciFunction fn;
    private final TestGpu gpu;
    private final VramInfo vram;
    private final List<Scheduler> schedulers;
    /** Jobs as their scheduler hands them to the hardware. */
    final BlockingQueue<GpuJob> started = new LinkedBlockingQueue<>();
    final AtomicInteger moves = new AtomicInteger();
    volatile BoMove lastMove;
    /** When set, each move fails with this errno before it copies a byte (a copy engine fault). */
    volatile Errno failMoves;

    TestAccelProvider(PciFunction fn, TestGpu gpu, int bar, long totalSize, Duration jobTimeout) {
        this.fn = fn;
        this.gpu = gpu;
        this.vram = new VramInfo(fn, bar, totalSize, fn.bar(bar).orElseThrow().size());
        this.schedulers = engines().stream().map(e -> Scheduler.create(new SchedulerConfig("testaccel-" + fn.bdf() + "-"
                + e.name(), 4, jobTimeout), this, null)).toList();
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
        return List.of(new EngineInfo("copy0", EngineInfo.EngineClass.COPY), new EngineInfo("copy1", EngineInfo.EngineClass.COPY));
    }

    /** A VM: PTEs written into the hardware's page table of that name. */
    private record Vm(String name, TreeMap<Long, Long> pt, TestGpu gpu) implements GpuVmOps {
        @Override
        public void map(long va, List<GpuRun> runs, boolean writable) {
            synchronized (pt) {
                long at = va;
                for (GpuRun r : runs) {
                    for (long o = 0; o < r.length(); o += TestGpu.PAGE, at += TestGpu.PAGE) {
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
            gpu.pageTables.remove(name);
        }
    }

    @Override
    public GpuVmOps createVm(String name) {
        TreeMap<Long, Long> pt = new TreeMap<>();
        gpu.pageTables.put(name, pt);
        return new Vm(name, pt, gpu);
    }

    @Override
    public Scheduler scheduler(int engine) {
        return schedulers.get(engine);
    }

    @Override
    public void checkJob(int engine, List<Command> commands) {
        for (Command c : commands) {
            ErrnoException.check(!(c instanceof Command.Launch l) || l.kernel().equals("nop") && l.args().isEmpty(),
                    Errno.EINVAL, "testaccel runs only the kernel nop(), not " + c);
        }
    }

    @Override
    public Fence runJob(SchedJob job) {
        GpuJob j = (GpuJob) job.payload();
        started.add(j);
        String vm = ((Vm) j.vm()).name();
        return gpu.run(List.of(), () -> j.commands().forEach(c -> execute(vm, c)));
    }

    private void execute(String vm, Command c) {
        switch (c) {
            case Command.Copy k -> {
                MemorySegment bytes = MemorySegment.ofArray(new byte[(int) k.length()]);
                gpu.transfer(gpu.translate(vm, k.src(), k.length()), bytes, false);
                gpu.transfer(gpu.translate(vm, k.dst(), k.length()), bytes, true);
            }
            case Command.Fill f -> {
                ByteBuffer b = ByteBuffer.allocate((int) f.length()).order(ByteOrder.LITTLE_ENDIAN);
                while (b.hasRemaining()) {
                    b.putInt(f.pattern());
                }
                gpu.transfer(gpu.translate(vm, f.dst(), f.length()), MemorySegment.ofArray(b.array()), true);
            }
            case Command.Launch l -> {
            }
        }
    }

    /** An engine reset as sched_main.c documents it: stop with the bad job, start; the hung job ends with ETIME. */
    @Override
    public TimeoutStatus timedOutJob(SchedJob job) {
        job.entity().scheduler().stop(job);
        job.entity().scheduler().start();
        return TimeoutStatus.RESET;
    }

    @Override
    public Fence move(BoMove move) {
        moves.incrementAndGet();
        lastMove = move;
        return gpu.run(move.dependencies(), () -> {
            Errno fail = failMoves;
            if (fail != null) {
                throw new ErrnoException(fail, "test: the move of " + move.bo() + " fails");
            }
            MemorySegment bytes = MemorySegment.ofArray(new byte[(int) move.size()]);
            gpu.transfer(move.from(), bytes, false);
            gpu.transfer(move.to(), bytes, true);
        });
    }

    @Override
    public Fence clear(String bo, List<GpuRun> runs) {
        long size = runs.stream().mapToLong(GpuRun::length).sum();
        return gpu.run(List.of(), () -> gpu.transfer(runs, MemorySegment.ofArray(new byte[(int) size]), true));
    }

    /** The driver's remove after unregistering: the scheduler finished, every job on it cancelled. */
    @Override
    public void close() {
        schedulers.forEach(Scheduler::fini);
    }
}
