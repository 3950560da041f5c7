package dev.dmaplane.gpudirect.bench;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.AccelDevice;
import dev.dmaplane.accel.Command;
import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.Submission;
import dev.dmaplane.accel.spi.EngineInfo;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.driver.gpu.host.GpuHost;
import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.gpudirect.GpuDirect;
import dev.dmaplane.gpudirect.GpuDirectConfig;
import dev.dmaplane.gpudirect.GpuDirectReport;
import dev.dmaplane.gpudirect.Scenario;
import dev.dmaplane.gpudirect.Transfer;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.VerbsContext;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.function.ToDoubleFunction;

/**
 * Issue 12's figures of docs/BENCHMARKS.md ("GPUDirect RDMA"), in one run on the default machine: peer-to-peer vs
 * bounce bandwidth at 64 MiB with CPU time per GiB and host bytes per delivered byte (from the GPUDIRECT scenario,
 * {@code rounds} times), object moves between VRAM and host memory against {@code MemorySegment.copy} of the same
 * size measured in the same JVM, and the submit-to-fence latency of an empty job. Medians throughout.
 * {@code java ... dev.dmaplane.gpudirect.bench.GpuDirectBench [rounds]}; {@code ./dmaplane perf gpudirect [rounds]}.
 */
public final class GpuDirectBench {
    private static final long SIZE = GpuDirectConfig.DEFAULT.size();
    private static final int LATENCY_JOBS = 2000;

    private GpuDirectBench() {
    }

    /** Prints the figures; a bad argument or a failed check ends with its message on standard error and status 1. */
    public static void main(String[] args) {
        try {
            run(args);
        } catch (ErrnoException e) {
            System.err.println(e.getMessage());
            System.exit(1);
        }
    }

    private static void run(String[] args) {
        int rounds;
        try {
            rounds = args.length > 0 ? Integer.parseInt(args[0]) : 5;
        } catch (NumberFormatException e) {
            throw new ErrnoException(Errno.EINVAL, "gpudirect bench: rounds '" + args[0] + "' is not a number");
        }
        ErrnoException.check(rounds >= 1 && rounds <= 1000, Errno.EINVAL, "gpudirect bench: rounds " + rounds
                + " is not 1..1000");
        System.out.printf("JVM %s, %d CPUs, %d rounds of %d MiB, medians%n", Runtime.version(),
                Runtime.getRuntime().availableProcessors(), rounds, SIZE >> 20);
        try (Machine m = Machine.bootDefault(); GpuHost gpu = GpuHost.on(m); SoftRoceHost rxe = SoftRoceHost.on(m)) {
            m.dmaDebug().setEnabled(false); // production setting, as the other benchmarks run
            double copy = copyMiBs(rounds);
            List<Transfer> p2p = new ArrayList<>();
            List<Transfer> bounce = new ArrayList<>();
            GpuDirectConfig cfg = GpuDirectConfig.DEFAULT.only(Scenario.GPUDIRECT);
            GpuDirect.run(m, gpu.core(), rxe.core(), cfg); // warm-up
            for (int i = 0; i < rounds; i++) {
                GpuDirectReport r = GpuDirect.run(m, gpu.core(), rxe.core(), cfg);
                ErrnoException.check(r.passed(), Errno.EIO, "gpudirect bench: a check failed: " + r.failures());
                p2p.add(r.transfer("p2p").orElseThrow());
                bounce.add(r.transfer("bounce").orElseThrow());
            }
            double p = median(p2p, Transfer::mibPerSecond);
            double b = median(bounce, Transfer::mibPerSecond);
            System.out.printf("MemorySegment.copy %d MiB          %8.0f MiB/s (baseline)%n", SIZE >> 20, copy);
            System.out.printf("peer-to-peer RDMA WRITE into VRAM %8.0f MiB/s  %.2f of copy  CPU %6.0f ms/GiB  host bytes/byte %.2f%n",
                    p, p / copy, median(p2p, Transfer::cpuMillisPerGiB), median(p2p, Transfer::hostBytesPerByte));
            System.out.printf("bounce (host, copy engine)        %8.0f MiB/s  %.2f of copy  CPU %6.0f ms/GiB  host bytes/byte %.2f%n",
                    b, b / copy, median(bounce, Transfer::cpuMillisPerGiB), median(bounce, Transfer::hostBytesPerByte));
            System.out.printf("peer-to-peer / bounce             %8.2fx%n", p / b);
            moves(m, gpu, rxe, rounds);
            latency(gpu.devices().getFirst());
        }
    }

    /** Single-thread {@code MemorySegment.copy} between two native segments of {@link #SIZE}, MiB/s. */
    private static double copyMiBs(int rounds) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment src = a.allocate(SIZE, 4096);
            MemorySegment dst = a.allocate(SIZE, 4096);
            src.fill((byte) 7);
            double[] mibs = new double[rounds + 1];
            for (int i = 0; i <= rounds; i++) {
                long t = System.nanoTime();
                MemorySegment.copy(src, 0, dst, 0, SIZE);
                mibs[i] = (SIZE >> 20) / ((System.nanoTime() - t) / 1e9);
            }
            return median(Arrays.copyOfRange(mibs, 1, mibs.length));
        }
    }

    /**
     * Object moves by the copy engine: VRAM to host when rxe1, which has no peer-to-peer path, maps the exported
     * object (the migration, its map included), host to VRAM when {@code validate} brings it back (until its KERNEL
     * fence signals); each also as the copy engine's own time on the move ({@link MoveClock}). Each round times a
     * {@code MemorySegment.copy} of the same size just before, and the ratios are per round, so that load from
     * elsewhere on the machine weighs on both sides alike. Two untimed rounds first, as for the transfers.
     */
    private static void moves(Machine m, GpuHost gpu, SoftRoceHost rxe, int rounds) {
        AccelDevice dev = gpu.devices().getFirst();
        double[][] mibs = new double[5][rounds];
        try (AccelContext ctx = dev.open(); AddressSpace mm = m.newAddressSpace("bench-rxe1");
             VerbsContext vctx = rxe.core().device(GpuDirect.FAR).orElseThrow().open(mm);
             MoveClock clock = new MoveClock(m.tracer()); Arena arena = Arena.ofConfined()) {
            MemorySegment src = arena.allocate(SIZE, 4096);
            MemorySegment dst = arena.allocate(SIZE, 4096);
            src.fill((byte) 7);
            ProtectionDomain pd = vctx.allocPd();
            int bo = ctx.createBo(SIZE, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM, Placement.HOST));
            ctx.write(bo, 0, MemorySegment.ofArray(new byte[(int) SIZE]));
            DmaBuf buf = ctx.primeExport(bo);
            try {
                for (int i = -2; i < rounds; i++) {
                    long t = System.nanoTime();
                    MemorySegment.copy(src, 0, dst, 0, SIZE);
                    long copy = System.nanoTime() - t;
                    clock.start();
                    t = System.nanoTime();
                    MemoryRegion mr = pd.regDmabufMr(0, SIZE, 0, buf, Access.LOCAL_WRITE);
                    long migration = System.nanoTime() - t;
                    ErrnoException.check(ctx.info(bo).placement() == Placement.HOST, Errno.EIO, "not migrated");
                    long out = clock.nanos();
                    mr.destroy();
                    clock.start();
                    t = System.nanoTime();
                    ctx.validate(bo);
                    for (Fence f : ctx.reservation(bo).fences(ResvUsage.KERNEL)) {
                        ErrnoException.check(f.await(Duration.ofSeconds(30)), Errno.ETIME, "move " + f + " hangs");
                    }
                    long back = System.nanoTime() - t;
                    ErrnoException.check(ctx.info(bo).placement() == Placement.VISIBLE_VRAM, Errno.EIO, "not back");
                    long in = clock.nanos();
                    if (i >= 0) {
                        long[] nanos = {copy, out, in, migration, back};
                        for (int k = 0; k < nanos.length; k++) {
                            mibs[k][i] = mibs(nanos[k]);
                        }
                    }
                }
            } finally {
                buf.put();
            }
        }
        String[] names = {"MemorySegment.copy, beside moves ", "move VRAM -> host, copy engine   ",
                "move host -> VRAM, copy engine   ", "migration VRAM -> host, all      ", "validate host -> VRAM, all       "};
        System.out.printf("%s %8.0f MiB/s (baseline of the rows below)%n", names[0], median(mibs[0]));
        for (int k = 1; k < names.length; k++) {
            double[] ratio = new double[rounds];
            for (int i = 0; i < rounds; i++) {
                ratio[i] = mibs[k][i] / mibs[0][i];
            }
            System.out.printf("%s %8.0f MiB/s  %.2f of copy%n", names[k], median(mibs[k]), median(ratio));
        }
    }

    private static double mibs(long nanos) {
        return (SIZE >> 20) / (nanos / 1e9);
    }

    /** Submit-to-signalled latency of an empty job (a 4-byte fill) on the first copy engine. */
    private static void latency(AccelDevice dev) {
        int engine = 0;
        while (dev.engines().get(engine).engineClass() != EngineInfo.EngineClass.COPY) {
            engine++;
        }
        double[] us = new double[LATENCY_JOBS];
        try (AccelContext ctx = dev.open()) {
            int bo = ctx.createBo(4096, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));
            long va = 1L << 32;
            ctx.vmBind(bo, 0, va, 4096, true);
            Submission job = Submission.on(engine, new Command.Fill(va, 4, 0)).writing(bo);
            for (int i = 0; i < LATENCY_JOBS; i++) {
                long t = System.nanoTime();
                Fence f = ctx.submit(job);
                ErrnoException.check(f.await(Duration.ofSeconds(10)) && f.error().isEmpty(), Errno.EIO, "job " + f);
                us[i] = (System.nanoTime() - t) / 1e3;
            }
        }
        double[] timed = Arrays.copyOfRange(us, LATENCY_JOBS / 2, LATENCY_JOBS);
        Arrays.sort(timed);
        System.out.printf("submit-to-fence, empty job        %8.1f us median, %.1f us p99 (%d jobs after %d warm-up)%n",
                median(timed), timed[(int) (timed.length * 0.99)], timed.length, LATENCY_JOBS / 2);
    }

    private static double median(List<Transfer> ts, ToDoubleFunction<Transfer> f) {
        return median(ts.stream().mapToDouble(f).toArray());
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }
}
