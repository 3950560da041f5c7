package dev.dmaplane.perftest.impl;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.perftest.Main;
import dev.dmaplane.perftest.PerfConfig;
import dev.dmaplane.perftest.Perftest;
import dev.dmaplane.rdma.RdmaCore;
import org.apache.felix.service.command.Descriptor;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import picocli.CommandLine;

import java.util.List;

/**
 * {@code dmaplane:perf write_bw -s 65536 -n 1000} in the Gogo shell: runs a perftest tool between rxe0 and rxe1 of
 * the runtime's machine (the Soft-RoCE driver must be bound) and returns perftest's report. Plain
 * {@code osgi.command.*} properties, so the bundle needs no Gogo runtime.
 */
@Component(service = PerfCommands.class, property = {
        "osgi.command.scope=dmaplane",
        "osgi.command.function=perf"})
public final class PerfCommands {
    private final Machine machine;
    private final RdmaCore core;

    @Activate
    public PerfCommands(@Reference Machine machine, @Reference RdmaCore core) {
        this.machine = machine;
        this.core = core;
    }

    /**
     * {@code perf TEST [-s N] [-n N] [-a] [-q N] [-D S] [-t N] [-Q N] [-l N] [-I N] [-b] [-e] [-c RC|UC|UD]
     * [--use_srq] [-N] [-H] [-U] [--report_gbits]}; bad options: EINVAL; {@code -h}/{@code --help}: the usage text
     * of perftest's command line ({@code perf TEST --help}: the tool's).
     */
    @Descriptor("a perftest tool between rxe0 and rxe1 of the runtime's machine (perf --help: the tools and options)")
    public String perf(@Descriptor("TEST [OPTION...]") String... args) {
        List<String> words = List.of(args);
        if (words.contains("-h") || words.contains("--help")) {
            CommandLine cli = Main.commandLine("dmaplane:perf");
            CommandLine tool = args.length > 0 ? cli.getSubcommands().get(args[0]) : null;
            return (tool != null ? tool : cli).getUsageMessage().stripTrailing();
        }
        return Perftest.run(machine, core, PerfConfig.parse(args)).report();
    }
}
