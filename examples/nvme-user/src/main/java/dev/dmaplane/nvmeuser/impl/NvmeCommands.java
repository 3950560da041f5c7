package dev.dmaplane.nvmeuser.impl;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.nvmeuser.Main;
import dev.dmaplane.nvmeuser.NvmePerf;
import dev.dmaplane.nvmeuser.PerfRequest;
import org.apache.felix.service.command.Descriptor;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.util.List;

/**
 * {@code nvme:perf -q 32 -o 4096 -w randread -t 5} in the Gogo shell: {@code nvme perf} on the runtime's machine
 * (its NVMe is bound to vfio-pci for the run and given back after) and its report. Plain {@code osgi.command.*}
 * properties, so the bundle needs no Gogo runtime.
 */
@Component(service = NvmeCommands.class, property = {
        "osgi.command.scope=nvme",
        "osgi.command.function=perf"})
public final class NvmeCommands {
    private final Machine machine;

    @Activate
    public NvmeCommands(@Reference Machine machine) {
        this.machine = machine;
    }

    /**
     * {@code perf -q N -o BYTES -w PATTERN [-M PERCENT] -t SECONDS [-c MASK|N] [-r TRID] [--irq] [--iommufd] [--direct]}; bad
     * options: EINVAL naming the option; {@code -h}/{@code --help}: the usage text.
     */
    @Descriptor("spdk_nvme_perf on the machine's NVMe through the user-space driver (perf --help: the options)")
    public String perf(@Descriptor("OPTION...") String... args) {
        if (List.of(args).contains("-h") || List.of(args).contains("--help")) {
            return Main.commandLine("nvme").getSubcommands().get("perf").getUsageMessage().stripTrailing();
        }
        PerfRequest r = PerfRequest.parse(args);
        return NvmePerf.run(machine, r.options(), r.direct()).report().stripTrailing();
    }
}
