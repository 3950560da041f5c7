package dev.dmaplane.perftest;

import dev.dmaplane.errno.ErrnoException;

/**
 * {@code java dev.dmaplane.perftest.Main write_bw -s 65536 -n 1000}: boots the default machine, binds Soft-RoCE,
 * runs one tool between rxe0 and rxe1 and prints perftest's report; {@code Main bench} runs the figures of
 * docs/BENCHMARKS.md ("perftest over Soft-RoCE").
 */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        try {
            if (args.length > 0 && args[0].equals("bench")) {
                Bench.main(args);
                return;
            }
            System.out.print(Perftest.run(PerfConfig.parse(args)).report());
        } catch (ErrnoException e) {
            System.err.println(e.getMessage());
            System.exit(1);
        }
    }
}
