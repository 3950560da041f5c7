package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.MissingParameterException;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.UnmatchedArgumentException;

import java.time.Duration;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code nvme perf} as one picocli model with spdk_nvme_perf's option names ({@code app/spdk_nvme_perf/perf.c},
 * {@code usage}): {@code -q/--io-depth}, {@code -o/--io-size}, {@code -w/--io-pattern}, {@code -M/--rwmixread},
 * {@code -t/--time}, {@code -a/--warmup-time}, {@code -c/--core-mask}, {@code -r/--transport}; and {@code --irq} (MSI-X completion),
 * {@code --iommufd} (the iommufd front end) and {@code --direct} (the same copies done directly) of its own. Parse errors are {@code EINVAL} naming the bad word.
 */
@Command(name = "nvme", mixinStandardHelpOptions = true, synopsisSubcommandLabel = "COMMAND",
        description = "The user-space NVMe driver of examples/nvme-user on the default machine's NVMe (06:00.0)"
                + " through VFIO.",
        subcommands = {NvmeCli.PerfCommand.class, NvmeCli.GdsCommand.class, NvmeCli.CmbCommand.class})
final class NvmeCli {
    /** Columns of the usage text. */
    static final int USAGE_WIDTH = 110;
    private static final Pattern TRID = Pattern.compile("(?i)\\s*trtype:pcie\\s+traddr:([0-9a-f]{4}:[0-9a-f]{2}:"
            + "[0-9a-f]{2}\\.[0-7])\\s*");

    private NvmeCli() {
    }

    /** The root command line named {@code name}. */
    static CommandLine commandLine(String name) {
        CommandLine cli = new CommandLine(new NvmeCli());
        cli.setCommandName(name);
        cli.setUsageHelpWidth(USAGE_WIDTH);
        return cli;
    }

    /** A picocli parse error as one line: {@code EINVAL} naming the option or the word. */
    static ErrnoException errno(ParameterException e) {
        CommandLine where = e.getCommandLine();
        if (e instanceof UnmatchedArgumentException u && !u.getUnmatched().isEmpty()) {
            String word = u.getUnmatched().getFirst();
            if (where.getCommandSpec().parent() == null && !word.startsWith("-")) {
                return new ErrnoException(Errno.EINVAL, "unknown command '" + word + "' (perf, gds, cmb)");
            }
            return new ErrnoException(Errno.EINVAL, "unknown option '" + word + "'");
        }
        if (e instanceof MissingParameterException m && !m.getMissing().isEmpty()
                && m.getMissing().getFirst() instanceof OptionSpec o) {
            return new ErrnoException(Errno.EINVAL, "option " + o.shortestName() + " is required");
        }
        return new ErrnoException(Errno.EINVAL, e.getMessage());
    }

    @Command(name = "perf", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"spdk_nvme_perf: keep -q I/Os of -o bytes outstanding per worker for -t seconds and print"
                    + " IOPS, MiB/s and the average, min and max latency in microseconds per worker and in total.",
                    "Every read's data is checked against what the run wrote (EIO, exit 1, if it differs)."})
    static final class PerfCommand {
        @Option(names = {"-q", "--io-depth"}, required = true, paramLabel = "N",
                description = "I/Os outstanding per worker (1..1023)")
        int queueDepth;
        @Option(names = {"-o", "--io-size"}, required = true, paramLabel = "BYTES",
                description = "bytes per I/O, a multiple of the block size")
        int ioSize;
        @Option(names = {"-w", "--io-pattern"}, required = true, paramLabel = "PATTERN",
                description = "read, write, randread, randwrite, rw or randrw")
        String pattern;
        @Option(names = {"-M", "--rwmixread"}, paramLabel = "PERCENT",
                description = "percentage of reads for rw and randrw (0..100)")
        Integer rwMixRead;
        @Option(names = {"-t", "--time"}, required = true, paramLabel = "SECONDS", description = "run time in seconds")
        int seconds;
        @Option(names = {"-a", "--warmup-time"}, paramLabel = "SECONDS",
                description = "run the workload this long first, unmeasured (default 0)")
        int warmup;
        @Option(names = {"-c", "--core-mask"}, paramLabel = "MASK|N",
                description = "a core mask (0x3: cores 0 and 1) or a number of workers; one queue pair each (default 1)")
        String cores = "1";
        @Option(names = {"-r", "--transport"}, paramLabel = "TRID",
                description = "'trtype:PCIe traddr:DDDD:BB:DD.F' (default the machine's NVMe, 0000:06:00.0)")
        String trid;
        @Option(names = "--irq", description = "complete by MSI-X through VFIO eventfds instead of polling")
        boolean irq;
        @Option(names = "--iommufd", description = "open the NVMe through iommufd (/dev/iommu and the device cdev)"
                + " instead of a VFIO container")
        boolean iommufd;
        @Option(names = "--direct", description = "then do the same copies directly (MemorySegment.copy) for the"
                + " same time and print them as a row of their own")
        boolean direct;

        /**
         * The options, checked.
         *
         * @throws ErrnoException {@code EINVAL} naming the bad option
         */
        PerfOptions options() {
            String bdf = PerfOptions.DEFAULT_BDF;
            if (trid != null) {
                Matcher m = TRID.matcher(trid);
                if (!m.matches()) {
                    throw new ErrnoException(Errno.EINVAL, "-r '" + trid + "': expected 'trtype:PCIe traddr:DDDD:BB:DD.F'");
                }
                bdf = m.group(1).toLowerCase(Locale.ROOT);
            }
            if (seconds < 1) {
                throw new ErrnoException(Errno.EINVAL, "-t " + seconds + ": the run time must be at least 1 second");
            }
            if (warmup < 0) {
                throw new ErrnoException(Errno.EINVAL, "-a " + warmup + ": the warm-up time cannot be negative");
            }
            return new PerfOptions(queueDepth, ioSize, Workload.of(pattern), rwMixRead == null ? -1 : rwMixRead,
                    Duration.ofSeconds(seconds), Duration.ofSeconds(warmup), PerfOptions.parseCores(cores), irq, bdf, iommufd);
        }
    }

    @Command(name = "gds", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"GPUDirect Storage: write -o random bytes to the NVMe, read them into a buffer of the GPU's"
                    + " VRAM (03:00.0) given as its dma-buf, and check them there. Where p2pdma finds no peer path"
                    + " between the GPU and the NVMe the bytes bounce through host memory; where it finds one they"
                    + " go direct through iommufd's IOMMU_IOAS_MAP_FILE of the dma-buf.",
                    "The default machine has no peer path; --p2p-machine boots the machine file nvme-user ships"
                    + " (gds-p2p-machine.yaml: the host bridge on p2pdma's whitelist)."})
    static final class GdsCommand {
        @Option(names = {"-o", "--io-size"}, paramLabel = "BYTES", description = "bytes to read (default 1048576)")
        long bytes = 1 << 20;
        @Option(names = "--direct", description = "the direct path only: EOPNOTSUPP where there is no peer path")
        boolean direct;
        @Option(names = "--p2p-machine", description = "boot gds-p2p-machine.yaml instead of the default machine")
        boolean p2pMachine;

        /**
         * The size, checked.
         *
         * @throws ErrnoException {@code EINVAL} for a size below 1 or over 256 MiB
         */
        long bytes() {
            if (bytes < 1 || bytes > 256L << 20) {
                throw new ErrnoException(Errno.EINVAL, "-o " + bytes + ": 1..268435456 bytes");
            }
            return bytes;
        }
    }

    @Command(name = "cmb", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"The NVMe controller memory buffer as an RDMA target: enable the 16 MiB buffer in the"
                    + " NVMe's BAR2 (CMBMSC), export -o bytes of it as a dma-buf through vfio-pci, register it on rxe1"
                    + " (ibv_reg_dmabuf_mr); rxe0 RDMA-WRITEs random bytes into it, the NVMe writes them to the"
                    + " namespace from there and they are read back and checked; then the NVMe reads into the buffer"
                    + " and rxe0 RDMA-READs it. The bus counters show what crossed host RAM.",
                    "The default machine has no peer path between rxe1 and the NVMe (EOPNOTSUPP); --p2p-machine boots"
                    + " the machine file nvme-user ships (the host bridge on p2pdma's whitelist).",
                    "--p2pmem: the NVMe bound to a kernel-style nvme driver that publishes the CMB as p2pmem"
                    + " (nvme_map_cmb); an nvmet-rdma-like target finds it for [rxe1, NVMe] (pci_p2pmem_find_many),"
                    + " allocates its data buffer there, RDMA-READs rxe0's bytes into it and writes them to the"
                    + " namespace, then reads other blocks into it and RDMA-WRITEs them to rxe0. Without a peer path"
                    + " the buffer is host memory, as nvmet falls back to sgl_alloc."})
    static final class CmbCommand {
        @Option(names = {"-o", "--io-size"}, paramLabel = "BYTES", description = "bytes to move (default 262144)")
        long bytes = 256 * 1024;
        @Option(names = "--p2p-machine", description = "boot gds-p2p-machine.yaml instead of the default machine")
        boolean p2pMachine;
        @Option(names = "--p2pmem", description = "the nvmet-rdma-like path over the CMB published as p2pmem")
        boolean p2pmem;
    }
}
