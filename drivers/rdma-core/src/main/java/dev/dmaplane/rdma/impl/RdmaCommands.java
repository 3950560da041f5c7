package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.cm.CmIdInfo;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.LinkLayer;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.shell.CommandUsage;
import org.apache.felix.service.command.Descriptor;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * The {@code rdma:} commands of the Gogo shell, after iproute2's {@code rdma} tool ({@code rdma/dev.c},
 * {@code link.c}, {@code res*.c}, {@code stat.c}): {@code dev}, {@code link}, {@code res}, {@code statistic}, each
 * with {@code show} and its object, and {@code -j}/{@code -p} for JSON. A bad device, port, object or filter is one
 * line with the command's usage, {@code ENODEV} or {@code EINVAL}. Registered with plain {@code osgi.command.*}
 * properties, so the bundle needs no Gogo runtime.
 */
@Component(service = RdmaCommands.class, property = {
        "osgi.command.scope=rdma",
        "osgi.command.function=dev",
        "osgi.command.function=link",
        "osgi.command.function=res",
        "osgi.command.function=statistic"})
public final class RdmaCommands {
    static final String DEV_USAGE = "rdma:dev [-j|-p] [show [DEV]]";
    static final String LINK_USAGE = "rdma:link [-j|-p] [show [DEV[/PORT]]]";
    static final String STAT_USAGE = "rdma:statistic [-j|-p] [show [link DEV[/PORT]]]";
    private static final Set<String> SHOW = Set.of("show", "list");
    private final RdmaCore core;

    @Activate
    public RdmaCommands(@Reference RdmaCore core) {
        this.core = core;
    }

    /** What the Gogo runtime calls when no form of a command takes its arguments: the command's usage, EINVAL. */
    public String _main(String... argv) {
        throw CommandUsage.wrongArguments(this, "rdma", argv);
    }

    /** {@code rdma dev}: one line per device. */
    @Descriptor("rdma dev: one line per device")
    public String dev() {
        return dev(new String[0]);
    }

    /** {@code rdma dev show [DEV]}, {@code -j}, {@code -p}. */
    @Descriptor("rdma dev show [DEV]: node type, protocol, firmware, node and system image GUIDs; -j/-p JSON")
    public String dev(@Descriptor("[-j|-p] [show [DEV]]") String... argv) {
        RdmaArgs args = RdmaArgs.parse("rdma:dev", argv);
        String name = showTarget(args, "rdma:dev", DEV_USAGE);
        List<RdmaRow> rows = new ArrayList<>();
        for (RdmaDevice d : core.devices()) {
            if (name == null || d.name().equals(name)) {
                rows.add(devRow(d));
            }
        }
        if (name != null && rows.isEmpty()) {
            throw noDevice(core, "rdma:dev", args, name, DEV_USAGE);
        }
        return rows.isEmpty() && !args.json() ? "no RDMA devices" : RdmaRow.render(rows, args);
    }

    /** {@code rdma link}: one line per port. */
    @Descriptor("rdma link: one line per port")
    public String link() {
        return link(new String[0]);
    }

    /** {@code rdma link show [DEV[/PORT]]}, {@code -j}, {@code -p}. */
    @Descriptor("rdma link show [DEV[/PORT]]: state, physical state, netdev; -j/-p JSON")
    public String link(@Descriptor("[-j|-p] [show [DEV[/PORT]]]") String... argv) {
        RdmaArgs args = RdmaArgs.parse("rdma:link", argv);
        String target = showTarget(args, "rdma:link", LINK_USAGE);
        List<RdmaRow> rows = new ArrayList<>();
        for (PortRef p : ports(args, "rdma:link", target, LINK_USAGE)) {
            rows.add(linkRow(p));
        }
        return rows.isEmpty() && !args.json() ? "no RDMA devices" : RdmaRow.render(rows, args);
    }

    /** {@code rdma statistic show}: each port's hardware counters on one line. */
    @Descriptor("rdma statistic show: each port's hardware counters")
    public String statistic() {
        return statistic(new String[0]);
    }

    /** {@code rdma statistic show [link DEV[/PORT]]}, {@code -j}, {@code -p}. */
    @Descriptor("rdma statistic show [link DEV[/PORT]]: the ports' hardware counters; -j/-p JSON")
    public String statistic(@Descriptor("[-j|-p] [show [link DEV[/PORT]]]") String... argv) {
        RdmaArgs args = RdmaArgs.parse("rdma:statistic", argv);
        String target = null;
        List<String> w = args.words();
        if (!w.isEmpty()) {
            if (!SHOW.contains(w.getFirst())) {
                throw wrong("rdma:statistic", args, "unknown statistic command '" + w.getFirst() + "'", STAT_USAGE);
            }
            if (w.size() >= 2 && !w.get(1).equals("link")) {
                throw wrong("rdma:statistic", args, "unknown object '" + w.get(1) + "' (link)", STAT_USAGE);
            }
            if (w.size() > 3) {
                throw wrong("rdma:statistic", args, "unexpected '" + w.get(3) + "'", STAT_USAGE);
            }
            target = args.word(2);
        }
        List<RdmaRow> rows = new ArrayList<>();
        for (PortRef p : ports(args, "rdma:statistic", target, STAT_USAGE)) {
            RdmaRow.Builder b = new RdmaRow.Builder().json("ifname", p.device().name()).json("port", p.port())
                    .text("link " + p.device().name() + "/" + p.port());
            p.device().hwCounters(p.port()).forEach(b::put);
            rows.add(b.build());
        }
        return rows.isEmpty() && !args.json() ? "no RDMA devices" : RdmaRow.render(rows, args);
    }

    /** {@code rdma resource}: one summary line per device. */
    @Descriptor("rdma resource: one summary line per device (pd cq qp cm_id mr ctx srq)")
    public String res() {
        return res(new String[0]);
    }

    /** {@code rdma resource show [DEV]} or {@code show qp|cq|mr|pd|ctx|srq [link|dev ...] [FILTER VALUE]...}. */
    @Descriptor("rdma resource show [DEV] | show qp|cq|mr|pd|ctx|srq [link DEV[/PORT]|dev DEV] [FILTER VALUE]...; -j/-p")
    public String res(@Descriptor("[-j|-p] [show ...]") String... argv) {
        RdmaArgs args = RdmaArgs.parse("rdma:res", argv);
        if (args.words().equals(List.of("cm_id")) || args.words().equals(List.of("show", "cm_id"))) {
            return renderCmIds(core);
        }
        return RdmaResources.show(core, args);
    }

    /** {@code rdma resource show cm_id}: every rdma_cm id, one line each. */
    static String renderCmIds(RdmaCore core) {
        List<CmIdInfo> ids = core.cm().ids();
        return ids.isEmpty() ? "no cm_id" : ids.stream().map(CmIdInfo::toString).collect(Collectors.joining("\n"));
    }

    /** A port of a device. */
    record PortRef(RdmaDevice device, int port) {
    }

    /** {@code show} or {@code list}, then at most one word: that word (or null). */
    private static String showTarget(RdmaArgs args, String command, String usage) {
        List<String> w = args.words();
        if (w.isEmpty()) {
            return null;
        }
        if (!SHOW.contains(w.getFirst())) {
            throw wrong(command, args, "unknown command '" + w.getFirst() + "' (show)", usage);
        }
        if (w.size() > 2) {
            throw wrong(command, args, "unexpected '" + w.get(2) + "'", usage);
        }
        return args.word(1);
    }

    /** Every port, or those of {@code DEV}, or the one of {@code DEV/PORT}. */
    List<PortRef> ports(RdmaArgs args, String command, String target, String usage) {
        String name = target == null ? null : target.contains("/") ? target.substring(0, target.indexOf('/')) : target;
        List<PortRef> out = new ArrayList<>();
        for (RdmaDevice d : core.devices()) {
            if (name != null && !d.name().equals(name)) {
                continue;
            }
            if (target != null && target.contains("/")) {
                int port = port(args, command, target, d, usage);
                out.add(new PortRef(d, port));
                return out;
            }
            for (int p = 1; p <= d.portCount(); p++) {
                out.add(new PortRef(d, p));
            }
        }
        if (name != null && out.isEmpty()) {
            throw noDevice(core, command, args, name, usage);
        }
        return out;
    }

    /** The port of {@code DEV/PORT} on {@code d}: digits in {@code 1..phys_port_cnt}. */
    static int port(RdmaArgs args, String command, String target, RdmaDevice d, String usage) {
        String p = target.substring(target.indexOf('/') + 1);
        if (p.isEmpty() || p.length() > 3 || !p.chars().allMatch(Character::isDigit)
                || Integer.parseInt(p) < 1 || Integer.parseInt(p) > d.portCount()) {
            throw wrong(command, args, "port '" + p + "' of " + d.name() + " is not in 1.." + d.portCount(), usage);
        }
        return Integer.parseInt(p);
    }

    private static RdmaRow devRow(RdmaDevice d) {
        DeviceAttr a = d.attr();
        return new RdmaRow.Builder()
                .json("ifindex", d.index()).text(d.index() + ":")
                .json("ifname", d.name()).text(d.name() + ":")
                .put("node_type", "ca")
                .put("protocol", d.portAttr(1).linkLayer() == LinkLayer.INFINIBAND ? "ib" : "roce")
                .put("fw", a.fwVer())
                .put("node_guid", guid(a.nodeGuid()))
                .put("sys_image_guid", guid(a.sysImageGuid()))
                .build();
    }

    private static RdmaRow linkRow(PortRef p) {
        PortAttr a = p.device().portAttr(p.port());
        RdmaRow.Builder b = new RdmaRow.Builder().json("ifindex", p.device().index()).json("ifname", p.device().name())
                .json("port", p.port()).text("link " + p.device().name() + "/" + p.port());
        if (a.linkLayer() == LinkLayer.INFINIBAND) {
            b.put("lid", a.lid());
        }
        b.put("state", a.state().name()).put("physical_state", physState(a.physState()));
        p.device().gidTable().stream().filter(g -> g.portNum() == p.port()).map(GidEntry::netdev).findFirst()
                .ifPresent(n -> b.put("netdev", n));
        return b.build();
    }

    /** {@code phys_state_to_str} of {@code rdma/link.c}. */
    static String physState(int s) {
        List<String> names = List.of("NOP", "SLEEP", "POLLING", "DISABLED", "ARMED", "LINK_UP", "LINK_ERROR_RECOVER",
                "PHY_TEST", "UNKNOWN", "OPA_OFFLINE", "UNKNOWN", "OPA_TEST");
        return s >= 0 && s < names.size() ? names.get(s) : "UNKNOWN";
    }

    /** {@code ENODEV}: the device is not registered; names those that are. */
    static ErrnoException noDevice(RdmaCore core, String command, RdmaArgs args, String name, String usage) {
        String known = core.devices().stream().map(RdmaDevice::name).collect(Collectors.joining(", "));
        return new ErrnoException(Errno.ENODEV, line(command, args) + ": no RDMA device '" + name + "' ("
                + (known.isEmpty() ? "none registered" : known) + "); usage: " + usage);
    }

    /** {@code EINVAL}: the command line, what is wrong with it and the usage, on one line. */
    static ErrnoException wrong(String command, RdmaArgs args, String what, String usage) {
        return new ErrnoException(Errno.EINVAL, line(command, args) + ": " + what + "; usage: " + usage);
    }

    private static String line(String command, RdmaArgs args) {
        return args.words().isEmpty() ? command : command + " " + String.join(" ", args.words());
    }

    /** A GUID as iproute2 prints it: four groups of four hex digits. */
    static String guid(long g) {
        String h = String.format("%016x", g);
        return h.substring(0, 4) + ":" + h.substring(4, 8) + ":" + h.substring(8, 12) + ":" + h.substring(12);
    }
}
