package dev.dmaplane.perftest;

import dev.dmaplane.errno.ErrnoException;

import java.io.PrintStream;
import java.util.function.Function;

/**
 * {@code java dev.dmaplane.perftest.Main write_bw -s 65536 -n 1000}: boots the default machine, binds Soft-RoCE,
 * runs one tool between rxe0 and rxe1 and prints perftest's report; {@code Main bench} runs the figures of
 * docs/BENCHMARKS.md ("perftest over Soft-RoCE"). This is what {@code ./dmaplane perf} runs.
 *
 * <p>Exit status: 0 after a run whose bytes checked out; 1, with the error on standard error and no report, for a
 * bad option ({@code EINVAL}), a failed byte check ({@code EIO}) or any other {@link ErrnoException}.
 */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        int status = run(args, Perftest::run, System.out, System.err);
        if (status != 0) {
            System.exit(status);
        }
    }

    /**
     * The command line without {@link System#exit}: runs {@code tool} on the parsed options (or the benchmark set
     * for {@code bench}) and returns the exit status {@link #main} ends with.
     */
    static int run(String[] args, Function<PerfConfig, PerfResult> tool, PrintStream out, PrintStream err) {
        try {
            if (args.length > 0 && args[0].equals("bench")) {
                Bench.main(args);
                return 0;
            }
            if (args.length > 0 && args[0].equals("bench-part")) {
                Bench.part(args);
                return 0;
            }
            out.print(tool.apply(PerfConfig.parse(args)).report());
            return 0;
        } catch (ErrnoException e) {
            err.println(e.getMessage());
            return 1;
        }
    }
}
