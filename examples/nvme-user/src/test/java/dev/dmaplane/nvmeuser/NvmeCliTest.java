package dev.dmaplane.nvmeuser;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code dmaplane nvme perf} with spdk_nvme_perf's options and report ({@code app/spdk_nvme_perf/perf.c}:
 * {@code usage}, {@code parse_args}, {@code print_performance}): a bad option is one line on standard error and
 * exit 1 with nothing run; the report has the Device Information, IOPS, MiB/s, Average, min and max columns.
 */
class NvmeCliTest {
    private final ByteArrayOutputStream out = new ByteArrayOutputStream();
    private final ByteArrayOutputStream err = new ByteArrayOutputStream();

    private int run(AtomicReference<PerfOptions> seen, String... args) {
        return Main.run(args, (o, direct) -> {
            seen.set(o);
            return new PerfResult(new NvmeIdentity("0000:06:00.0", 0x1da0, "SN", "MN", "1.0", 2097152, 512, 131072,
                    1024, 64), 3, o, List.of(new WorkerResult(0, 300_000, 300_000L * o.ioSize(), 1_000_000_000L,
                    300_000L * 100_000, 20_000, 900_000, 300_000, 0, 1000)),
                    direct ? Optional.of(new WorkerResult(0, 5_000_000, 5_000_000L * o.ioSize(), 1_000_000_000L,
                            5_000_000L * 150, 50, 70_000, 0, 0, 0)) : Optional.empty());
        }, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
            "-q 0 -o 4096 -w randread -t 1|-q 0: queue depth outside 1..1023",
            "-q 32 -o 1000 -w randread -t 1|-o 1000: I/O size must be a positive multiple of 512",
            "-q 32 -o 4096 -w randwrit -t 1|-w randwrit: io pattern type must be one of read, write, randread",
            "-q 32 -o 4096 -w rw -t 1|-w rw needs -M with a read percentage in 0..100",
            "-q 32 -o 4096 -w rw -M 101 -t 1|-w rw needs -M with a read percentage in 0..100, not 101",
            "-q 32 -o 4096 -w read -M 50 -t 1|-M 50 applies only to -w rw and randrw, not read",
            "-q 32 -o 4096 -w read -t 0|-t 0: the run time must be at least 1 second",
            "-q 32 -o 4096 -w read -t 1 -c 0x0|-c 0x0: the core mask selects no core",
            "-q 32 -o 4096 -w read -t 1 -a -1|-a -1: the warm-up time cannot be negative",
            "-q 32 -o 4096 -w read -t 1 -c two|-c two: neither a core mask (0x3) nor a number of workers",
            "-q 32 -o 4096 -w read -t 1 -r 06:00.0|-r '06:00.0': expected 'trtype:PCIe traddr:DDDD:BB:DD.F'",
            "-q 32 -o 4096 -w read|option -t is required",
            "-q 32 -o 4096 -w read -t 1 --bogus|unknown option '--bogus'",
            "-q x -o 4096 -w read -t 1|'x'",
    })
    void aBadOptionIsOneLineAndExit1(String line, String message) {
        AtomicReference<PerfOptions> seen = new AtomicReference<>();
        List<String> words = new java.util.ArrayList<>(List.of("perf"));
        words.addAll(List.of(line.split(" ")));
        assertEquals(1, run(seen, words.toArray(String[]::new)));
        String e = err.toString(StandardCharsets.UTF_8);
        assertEquals(1, e.lines().count(), "one line: " + e);
        assertTrue(e.startsWith("dmaplane nvme perf: "), e);
        assertTrue(e.contains(message), e);
        assertNull(seen.get(), "nothing ran");
        assertEquals("", out.toString(StandardCharsets.UTF_8));
    }

    @Test
    void optionsReachTheRun() {
        AtomicReference<PerfOptions> seen = new AtomicReference<>();
        assertEquals(0, run(seen, "perf", "-q", "16", "-o", "8192", "-w", "randrw", "-M", "70", "-t", "2", "-c",
                "0x5", "--irq", "-r", "trtype:PCIe traddr:0000:06:00.0"));
        assertEquals(new PerfOptions(16, 8192, Workload.RANDRW, 70, Duration.ofSeconds(2), Duration.ZERO,
                List.of(0, 2), true, "0000:06:00.0", false), seen.get());
        assertEquals(0, run(seen, "perf", "-q", "1", "-o", "4096", "-w", "read", "-t", "1", "--iommufd"));
        assertTrue(seen.get().iommufd(), "--iommufd selects the iommufd front end");
        assertEquals(0, run(seen, "perf", "--io-depth=1", "--io-size=4096", "--io-pattern=read", "--time=1",
                "--core-mask=3"));
        assertEquals(List.of(0, 1, 2), seen.get().cores(), "a plain number is a count of workers");
        assertEquals(0, run(seen, "perf", "-q", "1", "-o", "4096", "-w", "read", "-t", "1", "-a", "2"));
        assertEquals(Duration.ofSeconds(2), seen.get().warmup());
    }

    @Test
    void theReportHasSpdkNvmePerfsColumns() {
        assertEquals(0, run(new AtomicReference<>(), "perf", "-q", "32", "-o", "4096", "-w", "randread", "-t", "1",
                "--direct"));
        List<String> lines = out.toString(StandardCharsets.UTF_8).lines().toList();
        assertTrue(lines.contains("Attached to NVMe Controller at 0000:06:00.0 [1da0:0003]"), String.join("\n", lines));
        String header = lines.stream().filter(l -> l.startsWith("Device Information")).findFirst().orElseThrow();
        assertTrue(header.matches("Device Information +:       IOPS      MiB/s    Average        min        max"),
                header);
        String row = lines.stream().filter(l -> l.startsWith("PCIE (0000:06:00.0) NSID 1 from core  0")).findFirst()
                .orElseThrow();
        assertTrue(row.endsWith(":  300000.00    1171.88     100.00      20.00     900.00"), row);
        assertEquals(header.indexOf(": "), row.indexOf(": "), "columns aligned");
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("Direct copy (MemorySegment.copy)")
                && l.endsWith(": 5000000.00   19531.25       0.15       0.05      70.00")), String.join("\n", lines));
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("Total ") && l.contains(" 300000.00")));
        assertTrue(lines.stream().anyMatch(l -> l.trim().equals("Latency(us)")));
    }

    @Test
    void helpNamesSpdkNvmePerfsOptions() {
        assertEquals(0, run(new AtomicReference<>(), "perf", "--help"));
        String usage = out.toString(StandardCharsets.UTF_8);
        for (String o : List.of("-q, --io-depth", "-o, --io-size", "-w, --io-pattern", "-M, --rwmixread", "-t, --time",
                "-a, --warmup-time",
                "-c, --core-mask", "--irq")) {
            assertTrue(usage.contains(o), o + " in\n" + usage);
        }
    }
}
