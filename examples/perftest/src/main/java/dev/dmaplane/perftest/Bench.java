package dev.dmaplane.perftest;

import dev.dmaplane.driver.softroce.SoftRoceDriver;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The figures of docs/BENCHMARKS.md "perftest over Soft-RoCE", in one JVM: 1 MiB RDMA_WRITE bandwidth against a
 * single-thread {@code MemorySegment.copy} of 1 MiB, the 64-byte RDMA_WRITE message rate on one QP with batched
 * doorbells, and the write_lat median for 8 bytes. {@code Main bench [seconds]}.
 */
final class Bench {
    private Bench() {
    }

    static void main(String[] args) {
        int secs = args.length > 1 ? Integer.parseInt(args[1]) : 5;
        Machine machine = Machine.bootDefault();
        RdmaCore core = new RdmaCore(machine.tracer());
        SoftRoceDriver driver = new SoftRoceDriver(core);
        machine.devices().registerDriver(driver);
        try {
            System.out.printf("JVM %s, %d CPUs, %d s per figure (after a 1 s warm-up)%n",
                    Runtime.version(), Runtime.getRuntime().availableProcessors(), secs);

            PerfConfig bw = PerfConfig.parse("write_bw", "-s", "1048576", "-D", String.valueOf(secs));
            Perftest.run(machine, core, PerfConfig.parse("write_bw", "-s", "1048576", "-D", "1"));
            PerfResult rBw = Perftest.run(machine, core, bw);
            System.out.print(rBw.report());

            double copy = copyBandwidth(1 << 20, secs);
            double rdma = ((PerfResult.Bw) rBw.rows().getFirst()).bwAverage();
            System.out.printf("MemorySegment.copy 1 MiB, one thread: %.2f MB/sec%n", copy);
            System.out.printf("RDMA_WRITE 1 MiB / copy = %.1f%% (target >= 80%%)%n%n", 100 * rdma / copy);

            String[] rate = {"write_bw", "-s", "64", "-t", "1024", "-Q", "512", "-D", String.valueOf(secs)};
            String[] warm = rate.clone();
            warm[warm.length - 1] = "1";
            Perftest.run(machine, core, PerfConfig.parse(warm));
            PerfResult rRate = Perftest.run(machine, core, PerfConfig.parse(rate));
            System.out.print(rRate.report());
            double mpps = ((PerfResult.Bw) rRate.rows().getFirst()).msgRateMpps();
            System.out.printf("64 B RDMA_WRITE, 1 QP, 1024-WR doorbells: %.3f M msg/s = %.1f%% of the 10 M/s target%n%n",
                    mpps, 100 * mpps / 10);

            Perftest.run(machine, core, PerfConfig.parse("write_lat", "-s", "8", "-D", "1"));
            PerfResult rLat = Perftest.run(machine, core, PerfConfig.parse("write_lat", "-s", "8", "-D", String.valueOf(secs)));
            System.out.print(rLat.report());
            System.out.printf("write_lat 8 B median (t_typical): %.2f usec%n",
                    ((PerfResult.Lat) rLat.rows().getFirst()).tTypical());
        } finally {
            machine.devices().unregisterDriver(driver);
            core.close();
            machine.close();
        }
    }

    /** Bytes per second as MB/sec (2^20) of copying {@code size} bytes between two native segments. */
    static double copyBandwidth(int size, int secs) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = arena.allocate(size, 4096), b = arena.allocate(size, 4096);
            a.fill((byte) 0x5a);
            long end = System.nanoTime() + 1_000_000_000L;
            while (System.nanoTime() < end) {
                MemorySegment.copy(a, 0, b, 0, size);
            }
            long n = 0;
            long start = System.nanoTime();
            end = start + secs * 1_000_000_000L;
            long now;
            do {
                for (int i = 0; i < 64; i++) {
                    MemorySegment.copy(a, 0, b, 0, size);
                }
                n += 64;
                now = System.nanoTime();
            } while (now < end);
            return n * (double) size / ((now - start) / 1e9) / (1 << 20);
        }
    }
}
