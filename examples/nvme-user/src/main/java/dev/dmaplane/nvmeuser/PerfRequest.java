package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.ErrnoException;
import picocli.CommandLine;
import picocli.CommandLine.ParameterException;

/**
 * The words after {@code perf} as a checked run: what the Gogo command {@code nvme:perf} parses with the same
 * picocli model as {@code ./dmaplane nvme perf}.
 *
 * @param options the run's options
 * @param direct  whether the direct copies follow the run
 */
public record PerfRequest(PerfOptions options, boolean direct) {
    public PerfRequest {
        ErrnoException.requireNonNull(options, "nvme perf: options");
    }

    /**
     * Parses {@code args} (without {@code perf}).
     *
     * @throws ErrnoException {@code EINVAL} naming the bad option
     */
    public static PerfRequest parse(String... args) {
        ErrnoException.requireNonNull(args, "nvme perf: arguments");
        CommandLine cli = NvmeCli.commandLine("nvme");
        String[] words = new String[args.length + 1];
        words[0] = "perf";
        System.arraycopy(args, 0, words, 1, args.length);
        try {
            CommandLine.ParseResult parsed = cli.parseArgs(words);
            NvmeCli.PerfCommand p = (NvmeCli.PerfCommand) parsed.subcommand().commandSpec().userObject();
            return new PerfRequest(p.options(), p.direct);
        } catch (ParameterException e) {
            throw NvmeCli.errno(e);
        }
    }
}
