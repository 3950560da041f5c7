package dev.dmaplane.perftest;

import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;

import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;

/**
 * The figures of docs/BENCHMARKS.md "perftest over Soft-RoCE", in one command: 1 MiB RDMA_WRITE bandwidth against a
 * single-thread {@code MemorySegment.copy} of 1 MiB (measured in the same JVM, right after), the 64-byte RDMA_WRITE
 * message rate on one QP with batched doorbells, and the write_lat median for 8 bytes between two measures of the
 * machine's core-to-core round trip (two threads ping-ponging a volatile). {@code Main bench [seconds]}.
 *
 * <p>Each of the three parts runs in a JVM of its own, forked with this one's options and class path, as JMH forks
 * per benchmark: otherwise the JIT's profile of the first part (1 MiB messages, cut-through) is what the next ones
 * run with. {@code Main bench-part PART [seconds]} runs one part in the current JVM.
 */
final class Bench {
    /** The parts, in the order they run. */
    static final List<String> PARTS = List.of("bw", "rate", "lat");

    private Bench() {
    }

    /** {@code bench [SECS]}: every part, each in a JVM of its own. */
    @Command(name = "bench", mixinStandardHelpOptions = true, versionProvider = PerfCli.Version.class,
            description = "docs/BENCHMARKS.md's figures (\"perftest over Soft-RoCE\"), each part in a JVM of its own")
    static final class BenchCommand {
        @Parameters(arity = "0..1", paramLabel = "SECS", converter = PerfCli.IntValue.class,
                description = "seconds per figure, after a 1 s warm-up (default 5)")
        int secs = 5;
    }

    /** {@code bench-part PART [SECS]}: one part in this JVM, as {@link #main} forks it. */
    @Command(name = "bench-part", hidden = true, mixinStandardHelpOptions = true,
            versionProvider = PerfCli.Version.class, description = "one part of bench in this JVM")
    static final class PartCommand {
        @Parameters(index = "0", paramLabel = "PART", description = "${COMPLETION-CANDIDATES}",
                completionCandidates = Parts.class)
        String part;
        @Parameters(index = "1", arity = "0..1", paramLabel = "SECS", converter = PerfCli.IntValue.class,
                description = "seconds per figure (default 5)")
        int secs = 5;
    }

    /** The parts' names. */
    static final class Parts implements Iterable<String> {
        @Override
        public Iterator<String> iterator() {
            return PARTS.iterator();
        }
    }

    static void main(int secs) {
        if (secs < 1) {
            throw new ErrnoException(Errno.EINVAL, "perftest: bench " + secs + ": seconds must be >= 1");
        }
        System.out.printf("JVM %s, %d CPUs, %d s per figure (after a 1 s warm-up), each part in a JVM of its own%n",
                Runtime.version(), Runtime.getRuntime().availableProcessors(), secs);
        System.out.flush();
        for (int i = 0; i < PARTS.size(); i++) {
            System.err.println(progress(i, PARTS.get(i)));
            fork(PARTS.get(i), secs);
        }
    }

    /** The line {@code bench} writes on stderr as part {@code index} starts: which part runs and what it measures. */
    static String progress(int index, String part) {
        String what = switch (part) {
            case "bw" -> "1 MiB RDMA WRITE bandwidth, then MemorySegment.copy of 1 MiB";
            case "rate" -> "64 B RDMA WRITE message rate with 1024-WR post lists";
            case "lat" -> "8 B write_lat, then a two-thread ping-pong";
            default -> throw new ErrnoException(Errno.EINVAL, "unknown bench part '" + part + "': one of " + PARTS);
        };
        return String.format("bench: part %d of %d, %s: %s", index + 1, PARTS.size(), part, what);
    }

    /** Runs {@code Main bench-part part secs} in a new JVM with this one's options and class path; waits for it. */
    private static void fork(String part, int secs) {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command()
                .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName(), "bench-part", part,
                String.valueOf(secs)));
        try {
            Process p = new ProcessBuilder(cmd).inheritIO().start();
            int status = p.waitFor();
            if (status != 0) {
                throw new ErrnoException(Errno.EIO, "bench part " + part + " exited with status " + status);
            }
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "cannot start a JVM for bench part " + part + ": " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "interrupted while bench part " + part + " ran");
        }
    }

    /** {@code bench-part PART [seconds]}: one part, with its warm-up, on a machine of its own. */
    static void part(String part, int secs) {
        if (!PARTS.contains(part)) {
            throw new ErrnoException(Errno.EINVAL, "unknown bench part '" + part + "': one of " + PARTS);
        }
        if (secs < 1) {
            throw new ErrnoException(Errno.EINVAL, "perftest: bench-part " + part + " " + secs + ": seconds must be >= 1");
        }
        try (SoftRoceHost host = SoftRoceHost.boot()) {
            switch (part) {
                case "bw" -> bandwidth(host.machine(), host.core(), secs);
                case "rate" -> rate(host.machine(), host.core(), secs);
                default -> latency(host.machine(), host.core(), secs);
            }
        }
    }

    private static void bandwidth(Machine machine, RdmaCore core, int secs) {
        Perftest.run(machine, core, PerfConfig.parse("write_bw", "-s", "1048576", "-D", "1"));
        PerfResult rBw = Perftest.run(machine, core, PerfConfig.parse("write_bw", "-s", "1048576", "-D",
                String.valueOf(secs)));
        System.out.print(rBw.report());
        double copy = copyBandwidth(1 << 20, secs);
        double rdma = ((PerfResult.Bw) rBw.rows().getFirst()).bwAverage();
        System.out.printf("MemorySegment.copy 1 MiB, one thread: %.2f MB/sec%n", copy);
        System.out.printf("RDMA_WRITE 1 MiB / copy = %.1f%% (target >= 80%%)%n%n", 100 * rdma / copy);
    }

    private static void rate(Machine machine, RdmaCore core, int secs) {
        String[] rate = {"write_bw", "-s", "64", "-t", "1024", "-Q", "512", "-l", "1024", "-D", String.valueOf(secs)};
        String[] warm = rate.clone();
        warm[warm.length - 1] = "1";
        Perftest.run(machine, core, PerfConfig.parse(warm));
        PerfResult rRate = Perftest.run(machine, core, PerfConfig.parse(rate));
        System.out.print(rRate.report());
        double mpps = ((PerfResult.Bw) rRate.rows().getFirst()).msgRateMpps();
        System.out.printf("64 B RDMA_WRITE, 1 QP, 1024-WR post lists (one doorbell each): %.3f M msg/s = %.1f%% of the 10 M/s target%n%n",
                mpps, 100 * mpps / 10);
    }

    private static void latency(Machine machine, RdmaCore core, int secs) {
        Perftest.run(machine, core, PerfConfig.parse("write_lat", "-s", "8", "-D", "1"));
        double before = pingPongNanos(1);
        PerfResult rLat = Perftest.run(machine, core, PerfConfig.parse("write_lat", "-s", "8", "-D",
                String.valueOf(secs)));
        double after = pingPongNanos(1);
        System.out.print(rLat.report());
        System.out.printf("write_lat 8 B median (t_typical): %.2f usec%n",
                ((PerfResult.Lat) rLat.rows().getFirst()).tTypical());
        System.out.printf("two threads ping-ponging a volatile, round trip median (core-to-core baseline): %.0f ns "
                + "before, %.0f ns after%n", before, after);
    }

    /** Round trips two threads take to bounce a value through two volatile fields, as write_lat's pollers do. */
    private static volatile long ping;
    private static volatile long pong;

    /**
     * The median round trip, in nanoseconds, of two threads that bounce a counter through two volatile fields for
     * {@code secs} seconds: what one cache line going to the other CPU and back costs on this machine. A VM's two
     * vCPUs can sit on cores near to or far from each other, and the hypervisor moves them: on the 2-vCPU VM of
     * docs/BENCHMARKS.md this was 100-120 ns or 410-460 ns, changing between runs and within one.
     */
    static double pingPongNanos(int secs) {
        ping = 0;
        pong = 0;
        Thread echo = Thread.ofPlatform().name("bench-echo").start(() -> {
            long last = 0;
            while (true) {
                long v;
                while ((v = ping) == last) {
                    Thread.onSpinWait();
                }
                last = v;
                if (v < 0) {
                    return;
                }
                pong = v;
            }
        });
        long[] rtt = new long[1 << 22];
        int k = 0;
        try {
            long end = System.nanoTime() + secs * 1_000_000_000L;
            for (long n = 1; k < rtt.length && System.nanoTime() - end < 0; n++) {
                long t0 = System.nanoTime();
                ping = n;
                while (pong != n) {
                    Thread.onSpinWait();
                }
                rtt[k++] = System.nanoTime() - t0;
            }
        } finally {
            ping = -1;
            try {
                echo.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        Arrays.sort(rtt, 0, k);
        return rtt[k / 2];
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
