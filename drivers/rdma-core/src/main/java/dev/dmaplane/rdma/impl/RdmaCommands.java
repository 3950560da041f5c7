package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.cm.CmIdInfo;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.shell.CommandUsage;
import org.apache.felix.service.command.Descriptor;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.util.List;
import java.util.stream.Collectors;

/**
 * The {@code rdma:} commands of the Gogo shell, after iproute2's {@code rdma} tool: {@code dev}, {@code link},
 * {@code res}. Registered with plain {@code osgi.command.*} properties, so the bundle needs no Gogo runtime.
 */
@Component(service = RdmaCommands.class, property = {
        "osgi.command.scope=rdma",
        "osgi.command.function=dev",
        "osgi.command.function=link",
        "osgi.command.function=res",
        "osgi.command.function=statistic"})
public final class RdmaCommands {
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
        return render(core);
    }

    static String render(RdmaCore core) {
        StringBuilder sb = new StringBuilder();
        int i = 0;
        for (RdmaDevice d : core.devices()) {
            DeviceAttr a = d.attr();
            sb.append(i++).append(": ").append(d.name()).append(": node_type ca fw ").append(a.fwVer())
                    .append(" node_guid ").append(guid(a.nodeGuid())).append(" sys_image_guid ")
                    .append(guid(a.sysImageGuid())).append(" driver ").append(d.driverName()).append('\n');
        }
        return sb.isEmpty() ? "no RDMA devices" : sb.toString().stripTrailing();
    }

    /** {@code rdma statistic show}: each port's hardware counters on one line. */
    @Descriptor("rdma statistic show: each port's hardware counters")
    public String statistic() {
        StringBuilder sb = new StringBuilder();
        for (RdmaDevice d : core.devices()) {
            for (int p = 1; p <= d.portCount(); p++) {
                sb.append("link ").append(d.name()).append('/').append(p);
                d.hwCounters(p).forEach((k, v) -> sb.append(' ').append(k).append(' ').append(v));
                sb.append('\n');
            }
        }
        return sb.isEmpty() ? "no RDMA devices" : sb.toString().stripTrailing();
    }

    /** {@code rdma link}: one line per port, then its GIDs. */
    @Descriptor("rdma link: one line per port, then its GIDs")
    public String link() {
        StringBuilder sb = new StringBuilder();
        for (RdmaDevice d : core.devices()) {
            for (int p = 1; p <= d.portCount(); p++) {
                PortAttr a = d.portAttr(p);
                int port = p;
                String netdev = d.gidTable().stream().filter(g -> g.portNum() == port).map(GidEntry::netdev)
                        .findFirst().orElse("-");
                sb.append("link ").append(d.name()).append('/').append(p).append(" state ").append(a.state())
                        .append(" physical_state ").append(a.physState() == PortAttr.PHYS_LINK_UP ? "LINK_UP" : "DISABLED")
                        .append(" mtu ").append(a.activeMtu().bytes()).append(" netdev ").append(netdev).append('\n');
                for (GidEntry g : d.gidTable()) {
                    if (g.portNum() == p) {
                        sb.append("    gid ").append(g.index()).append(' ').append(g.gid()).append(' ')
                                .append(g.type()).append('\n');
                    }
                }
            }
        }
        return sb.isEmpty() ? "no RDMA devices" : sb.toString().stripTrailing();
    }

    /** {@code rdma resource show}: every object of every context. */
    @Descriptor("rdma resource show: every object of every context")
    public String res() {
        String s = core.resShow();
        return s.isEmpty() ? "no RDMA resources" : s;
    }

    /** {@code rdma resource show cm_id}: every rdma_cm id, one line each. */
    @Descriptor("rdma resource show cm_id: every rdma_cm id")
    public String res(@Descriptor("cm_id") String what) {
        if (!"cm_id".equals(what)) {
            throw new ErrnoException(Errno.EINVAL, "rdma res: unknown object '" + what + "' (cm_id)");
        }
        return renderCmIds(core);
    }

    static String renderCmIds(RdmaCore core) {
        List<CmIdInfo> ids = core.cm().ids();
        return ids.isEmpty() ? "no cm_id" : ids.stream().map(CmIdInfo::toString).collect(Collectors.joining("\n"));
    }

    private static String guid(long g) {
        String h = String.format("%016x", g);
        return h.substring(0, 4) + ":" + h.substring(4, 8) + ":" + h.substring(8, 12) + ":" + h.substring(12);
    }
}
