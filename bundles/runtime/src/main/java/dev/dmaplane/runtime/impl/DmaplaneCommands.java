package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.device.Driver;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bdf;
import dev.dmaplane.pci.LspciOptions;
import dev.dmaplane.runtime.topo.Graphviz;
import dev.dmaplane.shell.CommandUsage;
import dev.dmaplane.trace.TraceEvent;
import dev.dmaplane.trace.TraceKind;
import org.apache.felix.service.command.Descriptor;
import org.osgi.framework.FrameworkUtil;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * The {@code dmaplane:} commands of the Gogo shell. Registered with the plain {@code osgi.command.scope} /
 * {@code osgi.command.function} service properties, so the bundle has no dependency on the Gogo runtime. Each
 * command returns its text; the shell prints it.
 */
@Component(service = DmaplaneCommands.class, property = {
        "osgi.command.scope=dmaplane",
        "osgi.command.function=lspci",
        "osgi.command.function=iommu",
        "osgi.command.function=dmadebug",
        "osgi.command.function=dma",
        "osgi.command.function=devices",
        "osgi.command.function=drivers",
        "osgi.command.function=trace",
        "osgi.command.function=memory",
        "osgi.command.function=dmabuf",
        "osgi.command.function=interrupts",
        "osgi.command.function=override",
        "osgi.command.function=unoverride",
        "osgi.command.function=bind",
        "osgi.command.function=unbind",
        "osgi.command.function=topo",
        "osgi.command.function=help"})
public final class DmaplaneCommands {
    /** Events {@code trace} shows without a count. */
    static final int DEFAULT_TRACE_EVENTS = 20;

    private final Machine machine;
    private final DriverBinder binder;
    private final DmaBufs dmaBufs;
    private final Graphviz graphviz;
    private final Path workDir;

    @Activate
    public DmaplaneCommands(@Reference Machine machine, @Reference DriverBinder binder, @Reference DmaBufs dmaBufs) {
        this(machine, binder, dmaBufs, Graphviz.onPath(), Path.of(""));
    }

    /**
     * With {@code graphviz} as the {@code dot} that {@code dmaplane:topo --svg} runs, and {@code workDir} as the
     * directory a relative FILE of {@code dmaplane:topo} is in (the process's working directory in the runtime).
     */
    DmaplaneCommands(Machine machine, DriverBinder binder, DmaBufs dmaBufs, Graphviz graphviz, Path workDir) {
        this.machine = machine;
        this.binder = binder;
        this.dmaBufs = dmaBufs;
        this.graphviz = graphviz;
        this.workDir = workDir;
    }

    /** {@code dmaplane:help}: what the commands do, then every command of every loaded bundle. */
    @Descriptor("what the dmaplane commands do, then every command of every loaded bundle")
    public String help() {
        return """
                dmaplane:lspci              PCI hierarchy as lspci -tv draws it, then every function with its
                                            IDs, IOMMU group and bound driver (lspci -nnk)
                dmaplane:lspci -t           the tree only
                dmaplane:lspci -v [BDF]     lspci -vv of one function (of all without BDF): command register,
                                            BARs, capabilities, ACS, IOMMU group, driver
                dmaplane:lspci -x [BDF]     config space as lspci -x dumps it (-xxx: 256 bytes, -xxxx: 4096),
                                            which the real lspci -F FILE -vvv decodes
                dmaplane:iommu              IOMMU groups (devices, drivers, current/default domain), domains
                                            (type, mapped bytes), fault count
                dmaplane:iommu faults       the faults the IOMMU recorded (device, IOVA, read/write, reason)
                dmaplane:iommu mappings     every IOVA range mapped in every paging domain
                dmaplane:dmadebug [-v]      dma-debug: active DMA mappings per device, findings (-v: with the
                                            stack that made each mapping)
                dmaplane:dma                DMA traffic by device and for the machine: bytes read from and
                                            written to host RAM and to peers' BARs, AtomicOps
                dmaplane:devices            devices on all buses, as a tree, with the driver bound to each
                dmaplane:drivers            registered drivers, their bundle, ID table and the devices they drive
                dmaplane:trace [N] [KIND]   the last N trace events (default %d), only of KIND if given
                dmaplane:memory             RAM size, allocated, resident and pinned page frames, DMA mappings
                dmaplane:dmabuf             dma-bufs as /sys/kernel/debug/dma_buf/bufinfo lists them: size, flags,
                                            mode, count, exporter, inode, name, fences, attached devices, and
                                            whether each is dynamic, pinned or revoked
                dmaplane:interrupts         /proc/interrupts: every requested MSI-X vector of every function
                                            with its count, chip, hwirq and handler name; ERR for spurious ones
                dmaplane:override           devices with a driver_override (driverctl list-overrides)
                dmaplane:override BDF DRV   driverctl set-override: only driver DRV may bind BDF; its driver is
                                            unbound if another, then BDF is probed again (drivers_probe)
                dmaplane:unoverride BDF     driverctl unset-override: clears it, unbinds, probes again
                dmaplane:bind BDF DRV       echo BDF > /sys/bus/pci/drivers/DRV/bind
                dmaplane:unbind BDF [DRV]   echo BDF > /sys/bus/pci/drivers/DRV/unbind (DRV: the bound driver)
                dmaplane:topo [--dot|--svg] [FILE]
                                            the machine as a picture: PCI tree, IOMMU groups as boxes, ACS on
                                            ports, drivers, peer-to-peer paths, dma-bufs with exporter and
                                            importers; DOT (default) or SVG through Graphviz's dot, to FILE
                dmaplane:deploy             every jar of the deploy directory with its bundle and state, or why it
                                            is not installed (not a zip, no manifest) or does not resolve (the
                                            package no bundle exports)
                -j after lspci, iommu, dmadebug, devices, drivers, memory or dmabuf: that listing as one line
                of JSON, as rdma -j prints it, for jq.
                Driver bundles copied into the deploy directory are installed, started and bound within a second;
                deleting them unbinds (the driver's remove runs) and uninstalls them.""".formatted(DEFAULT_TRACE_EVENTS)
                + index();
    }

    /** Every command of every loaded bundle, after a blank line; nothing outside a framework. */
    private String index() {
        String index = CommandIndex.of(FrameworkUtil.getBundle(getClass()));
        return index.isEmpty() ? "" : "\n\n" + index;
    }

    /** What the Gogo runtime calls when no form of a command takes its arguments: the command's usage, EINVAL. */
    public String _main(String... argv) {
        throw CommandUsage.wrongArguments(this, "dmaplane", argv);
    }

    /** {@code dmaplane:topo}: the machine's picture as Graphviz DOT. */
    @Descriptor("the machine's picture (PCI tree, IOMMU groups, peer-to-peer paths, dma-bufs) as Graphviz DOT")
    public String topo() {
        return TopoView.run(machine, graphviz, workDir, List.of());
    }

    /** {@code dmaplane:topo --dot}, {@code --svg} (through Graphviz's {@code dot}) or {@code FILE} (DOT into it). */
    @Descriptor("the picture as DOT or as SVG through Graphviz's dot, or DOT into FILE")
    public String topo(@Descriptor("--dot|--svg|FILE") String arg) {
        return TopoView.run(machine, graphviz, workDir, List.of(arg));
    }

    /** {@code dmaplane:topo --dot FILE} or {@code --svg FILE}: the picture written to FILE. */
    @Descriptor("the picture as DOT or SVG written to FILE")
    public String topo(@Descriptor("--dot|--svg") String format, @Descriptor("FILE") String file) {
        return TopoView.run(machine, graphviz, workDir, List.of(format, file));
    }

    /** {@code dmaplane:dmabuf}: the machine's dma-bufs as {@code /sys/kernel/debug/dma_buf/bufinfo} shows them. */
    @Descriptor("dma-bufs as /sys/kernel/debug/dma_buf/bufinfo lists them")
    public String dmabuf() {
        return dmaBufs.bufinfo().strip();
    }

    /** {@code dmaplane:dmabuf -j}: the live dma-bufs with their fences and attachments as JSON. */
    @Descriptor("the live dma-bufs with their fences and attachments as JSON")
    public String dmabuf(@Descriptor("-j") String option) {
        requireJson("dmabuf", option);
        return JsonViews.write(JsonViews.dmaBufs(dmaBufs));
    }

    /** {@code dmaplane:interrupts}: the machine's requested MSI-X vectors as {@code /proc/interrupts} shows them. */
    @Descriptor("every requested MSI-X vector, as /proc/interrupts")
    public String interrupts() {
        return IrqVectors.procInterrupts(machine.pci().functions()).stripTrailing();
    }

    /** {@code dmaplane:lspci}: {@code lspci -tv} with bound drivers, then one line per function. */
    @Descriptor("the PCI tree as lspci -tv, then every function as lspci -nnk")
    public String lspci() {
        return PciView.treeAndList(machine);
    }

    /**
     * {@code dmaplane:lspci} with pciutils' options ({@link LspciOptions}: {@code -n}, {@code -nn}, {@code -D},
     * {@code -k}, {@code -t}, {@code -v}, {@code -x}/{@code -xxx}/{@code -xxxx}, {@code -s SLOT}, {@code -d ID}, a bare
     * BDF) or {@code -j} (every function as JSON). {@code -k}'s "Kernel modules" are the registered drivers whose ID
     * table matches the function.
     */
    @Descriptor("lspci [-n[n]] [-D] [-k] [-t] [-v] [-x[xx[x]]] [-s [[[[DOM]:]BUS]:][SLOT][.[FN]]] "
            + "[-d [VEN]:[DEV][:CLASS]] [BDF] as pciutils, or -j (JSON)")
    public String lspci(@Descriptor("lspci options") String... args) {
        LspciOptions o = LspciOptions.parse("dmaplane:lspci", args == null ? List.of() : Arrays.asList(args));
        if (o.json()) {
            return JsonViews.write(JsonViews.lspci(machine));
        }
        String out = machine.pci().lspci(o, fn -> machine.devices().drivers().stream()
                .filter(d -> d.matchTable().match(fn).isPresent()).map(Driver::name).toList());
        return o.hexBytes() > 0 && !o.tree() ? out : out.stripTrailing();
    }

    /** {@code dmaplane:iommu}: groups, domains and the fault count. */
    @Descriptor("IOMMU groups, domains, fault count")
    public String iommu() {
        return IommuView.overview(machine.iommu());
    }

    /** {@code dmaplane:iommu faults}, {@code dmaplane:iommu mappings} or {@code dmaplane:iommu -j} (JSON). */
    @Descriptor("the faults the IOMMU recorded, every mapped IOVA range, or the state as JSON")
    public String iommu(@Descriptor("faults|mappings|-j") String what) {
        return switch (what) {
            case "faults" -> IommuView.faults(machine.iommu());
            case "mappings" -> IommuView.mappings(machine.iommu());
            case "groups", "domains" -> IommuView.overview(machine.iommu());
            case "-j" -> JsonViews.write(JsonViews.iommu(machine));
            default -> throw usage("iommu", "argument '" + what + "'", "dmaplane:iommu [faults | mappings | -j]");
        };
    }

    /** {@code dmaplane:dmadebug}: active mappings and findings, one line each. */
    @Descriptor("dma-debug: active DMA mappings per device, findings")
    public String dmadebug() {
        return DmaDebugView.describe(machine, false);
    }

    /**
     * {@code dmaplane:dmadebug -v}: the findings with the stack of the call that made each mapping;
     * {@code dmaplane:dmadebug -j}: the state as JSON.
     */
    @Descriptor("dma-debug with the stack that made each mapping, or the state as JSON")
    public String dmadebug(@Descriptor("-v|-j") String option) {
        return switch (option) {
            case "-v" -> DmaDebugView.describe(machine, true);
            case "-j" -> JsonViews.write(JsonViews.dmaDebug(machine));
            default -> throw usage("dmadebug", "option '" + option + "'", "dmaplane:dmadebug [-v | -j]");
        };
    }

    /** {@code dmaplane:override}: the devices with a {@code driver_override}, as {@code driverctl list-overrides}. */
    @Descriptor("devices with a driver_override (driverctl list-overrides)")
    public String override() {
        List<String> lines = machine.devices().devices().stream().filter(d -> d.driverOverride().isPresent())
                .map(d -> d.name() + " " + d.driverOverride().get()).sorted().toList();
        return lines.isEmpty() ? "no driver overrides" : String.join("\n", lines);
    }

    /**
     * {@code dmaplane:override BDF DRIVER}: {@code driverctl set-override}: sets {@code driver_override}, unbinds
     * the device's driver if it is another one, and probes it again ({@code drivers_probe}).
     */
    @Descriptor("driverctl set-override: only DRIVER may bind BDF")
    public String override(@Descriptor("BDF") String device, @Descriptor("DRIVER") String driver) {
        Device d = device("override", device);
        DeviceCore core = machine.devices();
        core.setDriverOverride(d, driver);
        Optional<Driver> current = d.driver();
        if (current.isPresent() && !current.get().name().equals(d.driverOverride().orElse(null))) {
            core.unbind(d, current.get());
        }
        core.reprobe(d);
        return binding(d);
    }

    /** {@code dmaplane:unoverride BDF}: {@code driverctl unset-override}: clears it, unbinds, probes again. */
    @Descriptor("driverctl unset-override: clears it, unbinds, probes again")
    public String unoverride(@Descriptor("BDF") String device) {
        Device d = device("unoverride", device);
        DeviceCore core = machine.devices();
        core.setDriverOverride(d, "");
        d.driver().ifPresent(current -> core.unbind(d, current));
        core.reprobe(d);
        return binding(d);
    }

    /** {@code dmaplane:bind BDF DRIVER}: {@code echo BDF > /sys/bus/pci/drivers/DRIVER/bind}. */
    @Descriptor("echo BDF > /sys/bus/pci/drivers/DRIVER/bind")
    public String bind(@Descriptor("BDF") String device, @Descriptor("DRIVER") String driver) {
        Device d = device("bind", device);
        machine.devices().bind(d, driver("bind", driver));
        return binding(d);
    }

    /** {@code dmaplane:unbind BDF}: {@code echo BDF > .../drivers/DRIVER/unbind} for the driver bound now. */
    @Descriptor("unbind BDF from the driver bound now")
    public String unbind(@Descriptor("BDF") String device) {
        Device d = device("unbind", device);
        Driver current = d.driver().orElseThrow(() -> new ErrnoException(Errno.ENODEV,
                "dmaplane:unbind: " + d.name() + " is bound to no driver"));
        machine.devices().unbind(d, current);
        return binding(d);
    }

    /** {@code dmaplane:unbind BDF DRIVER}: {@code echo BDF > /sys/bus/pci/drivers/DRIVER/unbind}. */
    @Descriptor("echo BDF > /sys/bus/pci/drivers/DRIVER/unbind")
    public String unbind(@Descriptor("BDF") String device, @Descriptor("DRIVER") String driver) {
        Device d = device("unbind", device);
        machine.devices().unbind(d, driver("unbind", driver));
        return binding(d);
    }

    /**
     * The device named {@code name} (an auxiliary device's name, or a BDF, short or full).
     *
     * @throws ErrnoException {@code EINVAL} for a malformed BDF, {@code ENODEV} for no such device
     */
    private Device device(String command, String name) {
        DeviceCore core = machine.devices();
        return core.findDevice(name).or(() -> core.findDevice(Bdf.parse(name).toString()))
                .orElseThrow(() -> new ErrnoException(Errno.ENODEV, "dmaplane:" + command + ": no device '" + name
                        + "' on this machine (dmaplane:devices lists them)"));
    }

    /** The registered driver named {@code name}; {@code ENODEV} if none (no {@code /sys/bus/pci/drivers/NAME}). */
    private Driver driver(String command, String name) {
        return machine.devices().drivers().stream().filter(d -> d.name().equals(name)).findFirst()
                .orElseThrow(() -> new ErrnoException(Errno.ENODEV, "dmaplane:" + command + ": no driver '" + name
                        + "' registered (dmaplane:drivers lists them)"));
    }

    /** One line: the device, its override and its driver. */
    private static String binding(Device d) {
        return d.name() + ": driver_override " + d.driverOverride().orElse("(none)") + ", "
                + d.driver().map(drv -> "bound to " + drv.name()).orElse("bound to no driver");
    }

    /** {@code dmaplane:dma}: the bus traffic of each function's DMA and of the whole machine. */
    @Descriptor("DMA traffic by device and for the machine")
    public String dma() {
        return DmaTrafficView.describe(machine);
    }

    /** {@code dmaplane:devices}: the device tree with bound drivers. */
    @Descriptor("devices on all buses, as a tree, with their drivers")
    public String devices() {
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

    /** {@code dmaplane:devices -j}: every device as JSON. */
    @Descriptor("every device as JSON")
    public String devices(@Descriptor("-j") String option) {
        requireJson("devices", option);
        return JsonViews.write(JsonViews.devices(machine));
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
    @Descriptor("registered drivers, their bundle, ID table and devices")
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

    /** {@code dmaplane:drivers -j}: every driver as JSON. */
    @Descriptor("every driver as JSON")
    public String drivers(@Descriptor("-j") String option) {
        requireJson("drivers", option);
        return JsonViews.write(JsonViews.drivers(machine, binder.registered()));
    }

    /** {@code dmaplane:trace}: the last {@value #DEFAULT_TRACE_EVENTS} trace events. */
    @Descriptor("the last 20 trace events")
    public String trace() {
        return trace(new String[0]);
    }

    /** {@code dmaplane:trace N} or {@code dmaplane:trace KIND}. */
    @Descriptor("the last N trace events, or the last 20 of KIND")
    public String trace(@Descriptor("N|KIND") String arg) {
        return trace(new String[]{arg});
    }

    /**
     * {@code dmaplane:trace N KIND} (either order), or {@code dmaplane:trace --work-requests on|off}: whether posted
     * work requests and their completions go into the ring as {@code POST} and {@code COMPLETION} events (off by
     * default: the post path is the hottest; a flight recording gets them whenever it enables them).
     */
    @Descriptor("the last N trace events of KIND (either order), or --work-requests on|off")
    public String trace(@Descriptor("N|KIND|--work-requests") String arg1, @Descriptor("KIND|N|on|off") String arg2) {
        if (arg1.equals("--work-requests")) {
            boolean on = switch (arg2) {
                case "on" -> true;
                case "off" -> false;
                default -> throw usage("trace", "'" + arg2 + "' after --work-requests (on or off)",
                        "dmaplane:trace --work-requests on|off");
            };
            machine.tracer().setWorkRequests(on);
            return "work requests and completions " + (on ? "go into" : "stay out of") + " the trace ring";
        }
        return trace(new String[]{arg1, arg2});
    }

    private String trace(String[] args) {
        int count = DEFAULT_TRACE_EVENTS;
        TraceKind kind = null;
        for (String a : args) {
            if (!a.isEmpty() && a.chars().allMatch(Character::isDigit)) {
                count = traceCount(a);
            } else {
                kind = traceKind(a);
            }
        }
        TraceKind k = kind;
        List<TraceEvent> events = k == null ? machine.tracer().snapshot() : machine.tracer().select(e -> e.kind() == k);
        List<TraceEvent> last = events.subList(Math.max(0, events.size() - count), events.size());
        if (last.isEmpty()) {
            return "no trace events" + (k == null ? "" : " of kind " + k);
        }
        long start = machine.tracer().startNanos();
        return last.stream().map(e -> stamped(start, e)).collect(Collectors.joining("\n"));
    }

    /** An event behind its time since boot in seconds, as {@code dmesg} prints printk's ({@code [%5lu.%06lu]}). */
    private static String stamped(long start, TraceEvent e) {
        long micros = Math.max(0, e.timeNanos() - start) / 1_000;
        return String.format("[%5d.%06d] %s", micros / 1_000_000, micros % 1_000_000, e);
    }

    /** A number of events: decimal digits up to {@link Integer#MAX_VALUE}. */
    private static int traceCount(String a) {
        try {
            return Integer.parseInt(a);
        } catch (NumberFormatException e) {
            throw usage("trace", "count '" + a + "' (more than " + Integer.MAX_VALUE + ")", "dmaplane:trace [N] [KIND]");
        }
    }

    /** A trace kind by name, in any case. */
    private static TraceKind traceKind(String a) {
        return Arrays.stream(TraceKind.values()).filter(k -> k.name().equalsIgnoreCase(a)).findFirst()
                .orElseThrow(() -> new ErrnoException(Errno.EINVAL, "dmaplane:trace: unknown trace kind '" + a
                        + "'; one of " + Arrays.stream(TraceKind.values()).map(Enum::name).collect(Collectors.joining(" "))));
    }

    /** The one option of a listing command, {@code -j} (JSON); {@code EINVAL} naming any other. */
    private static void requireJson(String command, String option) {
        if (!option.equals("-j")) {
            throw usage(command, "option '" + option + "'", "dmaplane:" + command + " [-j]");
        }
    }

    /** A usage error: {@code EINVAL} naming the command, the bad argument and the usage. */
    private static ErrnoException usage(String command, String bad, String usage) {
        return new ErrnoException(Errno.EINVAL, "dmaplane:" + command + ": bad " + bad + "; usage: " + usage);
    }

    /** {@code dmaplane:memory}: RAM size, allocated frames, resident bytes, pinned frames. */
    @Descriptor("RAM size, allocated, resident and pinned frames, DMA mappings")
    public String memory() {
        HostMemory m = machine.memory();
        long allocated = m.allocatedFrames();
        return String.format("""
                RAM        %s (%d frames of %s)
                allocated  %d frames (%s)
                resident   %s (host memory backing the touched 2 MiB sections)
                pinned     %d frames
                DMA        %d active mappings""",
                MachineReport.bytes(m.size()), m.totalFrames(), MachineReport.bytes(HostMemory.PAGE_SIZE),
                allocated, MachineReport.bytes(allocated * HostMemory.PAGE_SIZE),
                MachineReport.bytes(m.residentBytes()), m.pinnedFrames(), machine.activeDmaMappings());
    }

    /** {@code dmaplane:memory -j}: the memory counters as JSON. */
    @Descriptor("the memory counters as JSON")
    public String memory(@Descriptor("-j") String option) {
        requireJson("memory", option);
        return JsonViews.write(JsonViews.memory(machine));
    }
}
