package dev.dmaplane.gpudirect.impl;

import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.gpudirect.GpuDirect;
import dev.dmaplane.gpudirect.GpuDirectConfig;
import dev.dmaplane.gpudirect.GpuDirectReport;
import dev.dmaplane.gpudirect.Scenario;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;
import org.apache.felix.service.command.Descriptor;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.util.Arrays;
import java.util.EnumSet;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * {@code gpudirect:demo [gpudirect|no_p2p|eviction|fallbacks ...]} in the Gogo shell: runs the headline demo on the
 * runtime's machine (the GPU driver and Soft-RoCE must be bound) and returns its report, whose last line says how
 * many checks held. Plain {@code osgi.command.*} properties, so the bundle needs no Gogo runtime.
 */
@Component(service = GpuDirectCommands.class, property = {
        "osgi.command.scope=gpudirect",
        "osgi.command.function=demo"})
public final class GpuDirectCommands {
    private final Machine machine;
    private final AccelCore accel;
    private final RdmaCore rdma;

    @Activate
    public GpuDirectCommands(@Reference Machine machine, @Reference AccelCore accel, @Reference RdmaCore rdma) {
        this.machine = machine;
        this.accel = accel;
        this.rdma = rdma;
    }

    /**
     * Runs every scenario, or those named.
     *
     * @throws ErrnoException {@code EINVAL} naming an unknown scenario
     */
    @Descriptor("the GPUDirect RDMA scenarios (all without SCENARIO), with their checks")
    public String demo(@Descriptor("SCENARIO") String... scenarios) {
        EnumSet<Scenario> which = EnumSet.noneOf(Scenario.class);
        for (String name : scenarios) {
            try {
                which.add(Scenario.valueOf(name.toUpperCase(Locale.ROOT)));
            } catch (IllegalArgumentException e) {
                throw new ErrnoException(Errno.EINVAL, "gpudirect: unknown scenario '" + name + "'; one of "
                        + Arrays.stream(Scenario.values()).map(s -> s.name().toLowerCase(Locale.ROOT))
                        .collect(Collectors.joining(", ")), e);
            }
        }
        GpuDirectConfig cfg = which.isEmpty() ? GpuDirectConfig.DEFAULT
                : new GpuDirectConfig(GpuDirectConfig.DEFAULT.size(), GpuDirectConfig.DEFAULT.message(),
                GpuDirectConfig.DEFAULT.bounceChunk(), GpuDirectConfig.DEFAULT.seed(), which);
        GpuDirectReport r = GpuDirect.run(machine, accel, rdma, cfg);
        int failed = r.failures().size();
        return r.text() + "\n" + (failed == 0 ? "gpudirect: all " + r.checks().size() + " checks passed"
                : "gpudirect: " + failed + " of " + r.checks().size() + " checks FAILED");
    }
}
