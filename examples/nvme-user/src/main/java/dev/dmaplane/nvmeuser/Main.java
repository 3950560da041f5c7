package dev.dmaplane.nvmeuser;

import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.TopologyLoader;
import picocli.CommandLine;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ParseResult;

import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.function.BiFunction;

/**
 * {@code java dev.dmaplane.nvmeuser.Main perf -q 32 -o 4096 -w randread -t 5}: boots the default machine, runs
 * {@code nvme perf} on its NVMe through VFIO and prints spdk_nvme_perf's report; {@code gds [--direct]
 * [--p2p-machine]} runs one checked GPUDirect-Storage read ({@link NvmeGds}); {@code cmb [--p2p-machine]} one checked
 * round trip between an HCA and the controller memory buffer ({@link NvmeCmb}), with {@code --p2pmem} through the
 * CMB published as p2pmem by a kernel-style driver ({@link P2pmemTarget}). This is what {@code ./dmaplane nvme}
 * runs. Exit status: 0 after a run whose data checked out (or help); 1, with one line on standard error and no report,
 * for a bad option ({@code EINVAL}), a failed I/O or data check ({@code EIO}) or any other {@link ErrnoException}.
 */
public final class Main {
    /** The command as users type it. */
    static final String NAME = "dmaplane nvme";

    private Main() {
    }

    public static void main(String[] args) {
        int status = run(args, System.out, System.err);
        if (status != 0) {
            System.exit(status);
        }
    }

    /** The command line named {@code name}, for a launcher's usage text and completion. */
    public static CommandLine commandLine(String name) {
        return NvmeCli.commandLine(name);
    }

    /** Runs the command line on a default machine of its own; returns the exit status. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        return run(args, (options, direct) -> {
            try (Machine machine = Machine.bootDefault()) {
                return NvmePerf.run(machine, options, direct);
            }
        }, out, err);
    }

    /** {@code nvme gds} on a machine of its own: the report, or one line on standard error and status 1. */
    private static int gds(NvmeCli.GdsCommand g, PrintStream out, PrintStream err) {
        try {
            long bytes = g.bytes();
            String text = g.p2pMachine ? GpuDirectStorage.peerMachineText() : TopologyLoader.defaultMachineText();
            try (Machine machine = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML),
                    Machine.Options.DEFAULT)) {
                out.print(NvmeGds.run(machine, bytes, g.direct).report());
                out.flush();
            }
            return 0;
        } catch (ErrnoException e) {
            err.println(NAME + " gds: " + e.getMessage());
            return 1;
        }
    }

    /** {@code nvme cmb} on a machine of its own with Soft-RoCE bound: the report, or one line on standard error. */
    private static int cmb(NvmeCli.CmbCommand cmd, PrintStream out, PrintStream err) {
        try (Machine machine = Machine.boot(TopologyLoader.load(NvmeCmb.machineText(cmd.p2pMachine),
                TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
             SoftRoceHost rxe = SoftRoceHost.on(machine)) {
            out.print(cmd.p2pmem ? P2pmemTarget.run(machine, rxe.core(), cmd.bytes).report()
                    : NvmeCmb.run(machine, rxe.core(), cmd.bytes).report());
            out.flush();
            return 0;
        } catch (ErrnoException e) {
            err.println(NAME + " cmb: " + e.getMessage());
            return 1;
        }
    }

    /** The command line with {@code perf} given: parses, runs, prints; returns the exit status. */
    static int run(String[] args, BiFunction<PerfOptions, Boolean, PerfResult> perf, PrintStream out,
                   PrintStream err) {
        CommandLine cli = NvmeCli.commandLine(NAME);
        cli.setOut(new PrintWriter(out, true, StandardCharsets.UTF_8));
        cli.setErr(new PrintWriter(err, true, StandardCharsets.UTF_8));
        try {
            ParseResult parsed = cli.parseArgs(args);
            if (CommandLine.printHelpIfRequested(parsed)) {
                return 0;
            }
            if (!parsed.hasSubcommand()) {
                err.println(NAME + ": no command given (perf); '" + NAME + " --help' describes them");
                return 1;
            }
            if (parsed.subcommand().commandSpec().userObject() instanceof NvmeCli.GdsCommand g) {
                return gds(g, out, err);
            }
            if (parsed.subcommand().commandSpec().userObject() instanceof NvmeCli.CmbCommand c) {
                return cmb(c, out, err);
            }
            NvmeCli.PerfCommand p = (NvmeCli.PerfCommand) parsed.subcommand().commandSpec().userObject();
            PerfOptions options = p.options();
            out.print(perf.apply(options, p.direct).report());
            out.flush();
            return 0;
        } catch (ParameterException e) {
            err.println(NAME + " perf: " + NvmeCli.errno(e).getMessage());
            return 1;
        } catch (ErrnoException e) {
            err.println(NAME + " perf: " + e.getMessage());
            return 1;
        }
    }
}
