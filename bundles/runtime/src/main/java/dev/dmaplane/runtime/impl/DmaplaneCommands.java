package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.TraceEvent;
import dev.dmaplane.trace.TraceKind;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * The {@code dmaplane:} commands of the Gogo shell. Registered with the plain {@code osgi.command.scope} /
 * {@code osgi.command.function} service properties, so the bundle has no dependency on the Gogo runtime. Each
 * command returns its text; the shell prints it.
 */
@Component(service = DmaplaneCommands.class, property = {
        "osgi.command.scope=dmaplane",
        "osgi.command.function=devices",
        "osgi.command.function=drivers",
        "osgi.command.function=trace",
        "osgi.command.function=memory",
        "osgi.command.function=help"})
public final class DmaplaneCommands {
    /** Events {@code trace} shows without a count. */
    static final int DEFAULT_TRACE_EVENTS = 20;

    private final Machine machine;
    private final DriverBinder binder;

    @Activate
    public DmaplaneCommands(@Reference Machine machine, @Reference DriverBinder binder) {
        this.machine = machine;
        this.binder = binder;
    }

    /** {@code dmaplane:help}: what the commands do. */
    public String help() {
        return """
                dmaplane:devices            devices on all buses, as a tree, with the driver bound to each
                dmaplane:drivers            registered drivers, their bundle, ID table and the devices they drive
                dmaplane:trace [N] [KIND]   the last N trace events (default %d), only of KIND if given
                dmaplane:memory             RAM size, allocated, resident and pinned page frames
                Driver bundles copied into the deploy directory are installed, started and bound within a second;
                deleting them unbinds (the driver's remove runs) and uninstalls them.""".formatted(DEFAULT_TRACE_EVENTS);
    }

    /** {@code dmaplane:devices}: the device tree with bound drivers. */
    public String devices() {
        // When the PCI topology lands: the PCI part of this tree comes from machine.pci().lspciTree().
        List<Device> all = machine.devices().devices();
        if (all.isEmpty()) {
            return "no devices";
        }
        StringBuilder sb = new StringBuilder();
        sb.append(String.format("%-22s %-5s %-8s %-6s %s%n", "DEVICE", "BUS", "DRIVER", "DEVRES", "DESCRIPTION"));
        for (Device d : all) {
            if (d.parent().isEmpty()) {
                appendTree(sb, d, "", "");
            }
        }
        return sb.toString().stripTrailing();
    }

    private static void appendTree(StringBuilder sb, Device d, String firstPrefix, String restPrefix) {
        sb.append(String.format("%-22s %-5s %-8s %-6d %s%n", firstPrefix + d.name(), d.bus().name().toLowerCase(Locale.ROOT),
                d.driver().map(Driver::name).orElse("-"), d.devres().size(), MachineReport.describe(d)));
        List<Device> kids = d.children();
        for (int i = 0; i < kids.size(); i++) {
            boolean last = i == kids.size() - 1;
            appendTree(sb, kids.get(i), restPrefix + (last ? "`- " : "|- "), restPrefix + (last ? "   " : "|  "));
        }
    }

    /** {@code dmaplane:drivers}: registered drivers and the devices each drives. */
    public String drivers() {
        List<Driver> all = machine.devices().drivers();
        if (all.isEmpty()) {
            return "no drivers registered";
        }
        List<DriverBinder.Registered> fromBundles = binder.registered();
        StringBuilder sb = new StringBuilder();
        for (Driver d : all) {
            String bundle = fromBundles.stream().filter(r -> r.driver() == d).map(DriverBinder.Registered::bundle)
                    .findFirst().orElse("(not from a bundle)");
            List<String> bound = machine.devices().boundTo(d).stream().map(Device::name).toList();
            sb.append(d.name()).append("  [").append(bundle).append("]\n");
            sb.append("  matches: ").append(MachineReport.describeTable(d)).append('\n');
            sb.append("  bound:   ").append(bound.isEmpty() ? "-" : String.join(", ", bound)).append('\n');
        }
        return sb.toString().stripTrailing();
    }

    /** {@code dmaplane:trace}: the last {@value #DEFAULT_TRACE_EVENTS} trace events. */
    public String trace() {
        return trace(new String[0]);
    }

    /** {@code dmaplane:trace N} or {@code dmaplane:trace KIND}. */
    public String trace(String arg) {
        return trace(new String[]{arg});
    }

    /** {@code dmaplane:trace N KIND} (either order). */
    public String trace(String arg1, String arg2) {
        return trace(new String[]{arg1, arg2});
    }

    private String trace(String[] args) {
        int count = DEFAULT_TRACE_EVENTS;
        TraceKind kind = null;
        for (String a : args) {
            if (a.chars().allMatch(Character::isDigit) && !a.isEmpty()) {
                count = Integer.parseInt(a);
            } else {
                try {
                    kind = TraceKind.valueOf(a.toUpperCase(Locale.ROOT));
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("unknown trace kind '" + a + "'; one of "
                            + Arrays.stream(TraceKind.values()).map(Enum::name).collect(Collectors.joining(" ")));
                }
            }
        }
        TraceKind k = kind;
        List<TraceEvent> events = k == null ? machine.tracer().snapshot() : machine.tracer().select(e -> e.kind() == k);
        List<TraceEvent> last = events.subList(Math.max(0, events.size() - count), events.size());
        if (last.isEmpty()) {
            return "no trace events" + (k == null ? "" : " of kind " + k);
        }
        return last.stream().map(TraceEvent::toString).collect(Collectors.joining("\n"));
    }

    /** {@code dmaplane:memory}: RAM size, allocated frames, resident bytes, pinned frames. */
    public String memory() {
        HostMemory m = machine.memory();
        long allocated = m.allocatedFrames();
        return String.format("""
                RAM        %s (%d frames of %s)
                allocated  %d frames (%s)
                resident   %s (host memory backing the touched 2 MiB sections)
                pinned     %d frames""",
                MachineReport.bytes(m.size()), m.totalFrames(), MachineReport.bytes(HostMemory.PAGE_SIZE),
                allocated, MachineReport.bytes(allocated * HostMemory.PAGE_SIZE),
                MachineReport.bytes(m.residentBytes()), MachineReport.pinnedFrames(m));
    }
}
