package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.DeviceCap;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.GidType;
import dev.dmaplane.rdma.verbs.LinkLayer;
import dev.dmaplane.rdma.verbs.OdpOp;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.shell.CommandUsage;
import org.apache.felix.service.command.Descriptor;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * rdma-core's {@code ibv_devices} ({@code libibverbs/examples/device_list.c}) and {@code ibv_devinfo}
 * ({@code devinfo.c}: {@code -d DEV}, {@code -i PORT}, {@code -l}, {@code -v}) as Gogo commands, field by field in the
 * order and with the tabs they print. They live in the {@code rdma} scope beside {@code rdma:dev}: both read the
 * same {@code RdmaCore} that libibverbs' device list is here, and Gogo finds {@code ibv_devinfo} without the scope.
 */
@Component(service = IbvCommands.class, property = {
        "osgi.command.scope=rdma",
        "osgi.command.function=ibv_devices",
        "osgi.command.function=ibv_devinfo"})
public final class IbvCommands {
    static final String USAGE = "ibv_devinfo [-d DEV|--ib-dev=DEV] [-i PORT|--ib-port=PORT] [-l|--list] "
            + "[-v|--verbose]";
    /** {@code IBV_DEVICE_*} bits of the capabilities the model has, in devinfo.c's order. */
    private static final Map<DeviceCap, Integer> CAP_BITS = Map.of(
            DeviceCap.RESIZE_MAX_WR, 1, DeviceCap.CURR_QP_STATE_MOD, 1 << 7,
            DeviceCap.PORT_ACTIVE_EVENT, 1 << 10, DeviceCap.SYS_IMAGE_GUID, 1 << 11,
            DeviceCap.RC_RNR_NAK_GEN, 1 << 12, DeviceCap.SRQ_RESIZE, 1 << 13, DeviceCap.N_NOTIFY_CQ, 1 << 14,
            DeviceCap.MEM_WINDOW, 1 << 17, DeviceCap.MEM_MGT_EXTENSIONS, 1 << 21,
            DeviceCap.MEM_WINDOW_TYPE_2B, 1 << 24);
    private static final List<DeviceCap> CAP_ORDER = List.of(DeviceCap.RESIZE_MAX_WR, DeviceCap.CURR_QP_STATE_MOD,
            DeviceCap.PORT_ACTIVE_EVENT, DeviceCap.SYS_IMAGE_GUID, DeviceCap.RC_RNR_NAK_GEN, DeviceCap.SRQ_RESIZE,
            DeviceCap.N_NOTIFY_CQ, DeviceCap.MEM_WINDOW, DeviceCap.MEM_MGT_EXTENSIONS, DeviceCap.MEM_WINDOW_TYPE_2B);
    private final RdmaCore core;

    @Activate
    public IbvCommands(@Reference RdmaCore core) {
        this.core = core;
    }

    /** What the Gogo runtime calls when no form of a command takes its arguments: the command's usage, EINVAL. */
    public String _main(String... argv) {
        throw CommandUsage.wrongArguments(this, "rdma", argv);
    }

    /** {@code ibv_devices}: device names and node GUIDs. */
    @Descriptor("ibv_devices: each RDMA device's name and node GUID")
    public String ibv_devices() {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format("    %-16s\t   node GUID\n", "device"));
        sb.append(String.format("    %-16s\t----------------\n", "------"));
        for (RdmaDevice d : core.devices()) {
            sb.append(String.format("    %-16s\t%016x\n", d.name(), d.nodeGuid()));
        }
        return sb.toString().stripTrailing();
    }

    /** {@code ibv_devinfo}: every device and port. */
    @Descriptor("ibv_devinfo: every device's attributes and ports")
    public String ibv_devinfo() {
        return ibv_devinfo(new String[0]);
    }

    /** {@code ibv_devinfo [-d DEV] [-i PORT] [-l] [-v]}. */
    @Descriptor("ibv_devinfo [-d DEV] [-i PORT] [-l] [-v]: attributes of one device or port, the list, or all fields")
    public String ibv_devinfo(@Descriptor("[-d DEV] [-i PORT] [-l] [-v]") String... argv) {
        String dev = null;
        int port = 0;
        boolean verbose = false;
        String[] a = argv == null ? new String[0] : argv;
        for (int i = 0; i < a.length; i++) {
            String w = a[i];
            if (w == null) {
                throw wrong("a null argument");
            }
            String value = null;
            char opt;
            if (w.startsWith("--ib-dev=") || w.startsWith("--ib-port=")) {
                opt = w.startsWith("--ib-dev=") ? 'd' : 'i';
                value = w.substring(w.indexOf('=') + 1);
            } else if (w.equals("--ib-dev") || w.equals("--ib-port")) {
                opt = w.equals("--ib-dev") ? 'd' : 'i';
            } else if (w.equals("--list") || w.equals("--verbose")) {
                opt = w.charAt(2);
            } else if (w.length() >= 2 && w.charAt(0) == '-' && "dilv".indexOf(w.charAt(1)) >= 0) {
                opt = w.charAt(1);
                if (opt == 'd' || opt == 'i') {
                    value = w.length() > 2 ? w.substring(2) : null;
                } else if (w.length() > 2) {
                    throw wrong("unknown option '" + w + "'");
                }
            } else {
                throw wrong((w.startsWith("-") ? "unknown option '" : "unexpected '") + w + "'");
            }
            if ((opt == 'd' || opt == 'i') && value == null) {
                if (i + 1 >= a.length || a[i + 1] == null) {
                    throw wrong("-" + opt + " needs a value");
                }
                value = a[++i];
            }
            switch (opt) {
                case 'd' -> dev = value;
                case 'i' -> port = portNumber(value);
                case 'l' -> {
                    return list();
                }
                default -> verbose = true;
            }
        }
        List<RdmaDevice> devices = core.devices();
        if (dev != null) {
            String name = dev;
            RdmaDevice d = devices.stream().filter(x -> x.name().equals(name)).findFirst().orElseThrow(() ->
                    new ErrnoException(Errno.ENODEV, "ibv_devinfo: IB device '" + name + "' wasn't found; usage: "
                            + USAGE));
            devices = List.of(d);
        } else if (devices.isEmpty()) {
            throw new ErrnoException(Errno.ENODEV, "ibv_devinfo: No IB devices found");
        }
        StringBuilder sb = new StringBuilder();
        for (RdmaDevice d : devices) {
            hca(sb, d, port, verbose);
        }
        return sb.toString().stripTrailing();
    }

    private String list() {
        List<RdmaDevice> devices = core.devices();
        StringBuilder sb = new StringBuilder().append(devices.size()).append(" HCA")
                .append(devices.size() != 1 ? "s" : "").append(" found:\n");
        devices.forEach(d -> sb.append('\t').append(d.name()).append('\n'));
        return sb.toString().stripTrailing();
    }

    /** {@code -i PORT}: {@code strtol} base 0 in devinfo.c, a positive port. */
    private static int portNumber(String v) {
        if (v.isEmpty() || v.length() > 3 || !v.chars().allMatch(Character::isDigit) || Integer.parseInt(v) < 1) {
            throw wrong("port '" + v + "' is not a positive number below 1000");
        }
        return Integer.parseInt(v);
    }

    private static ErrnoException wrong(String what) {
        return new ErrnoException(Errno.EINVAL, "ibv_devinfo: " + what + "; usage: " + USAGE);
    }

    /** {@code print_hca_cap}. */
    private static void hca(StringBuilder sb, RdmaDevice d, int port, boolean verbose) {
        DeviceAttr a = d.attr();
        if (port > a.physPortCnt()) {
            throw new ErrnoException(Errno.EINVAL, "ibv_devinfo: Invalid port requested for device " + d.name()
                    + ": " + port + " (ports 1.." + a.physPortCnt() + ")");
        }
        sb.append("hca_id:\t").append(d.name()).append('\n');
        sb.append("\ttransport:\t\t\tInfiniBand (0)\n");
        if (!a.fwVer().isEmpty()) {
            sb.append("\tfw_ver:\t\t\t\t").append(a.fwVer()).append('\n');
        }
        sb.append("\tnode_guid:\t\t\t").append(RdmaCommands.guid(a.nodeGuid())).append('\n');
        sb.append("\tsys_image_guid:\t\t\t").append(RdmaCommands.guid(a.sysImageGuid())).append('\n');
        sb.append(String.format("\tvendor_id:\t\t\t0x%04x\n", a.vendorId()));
        sb.append("\tvendor_part_id:\t\t\t").append(a.vendorPartId()).append('\n');
        sb.append(String.format("\thw_ver:\t\t\t\t0x%X\n", a.hwVer()));
        sb.append("\tphys_port_cnt:\t\t\t").append(a.physPortCnt()).append('\n');
        if (verbose) {
            deviceCaps(sb, a);
        }
        for (int p = 1; p <= a.physPortCnt(); p++) {
            if (port != 0 && p != port) {
                continue;
            }
            port(sb, d, p, verbose);
        }
    }

    /** The {@code -v} device fields, up to the capabilities the model has none of. */
    private static void deviceCaps(StringBuilder sb, DeviceAttr a) {
        int flags = a.caps().stream().filter(CAP_BITS::containsKey).mapToInt(CAP_BITS::get).reduce(0, (x, y) -> x | y);
        sb.append(String.format("\tmax_mr_size:\t\t\t0x%x\n", a.maxMrSize()));
        sb.append(String.format("\tpage_size_cap:\t\t\t0x%x\n", a.pageSizeCap()));
        sb.append("\tmax_qp:\t\t\t\t").append(a.maxQp()).append('\n');
        sb.append("\tmax_qp_wr:\t\t\t").append(a.maxQpWr()).append('\n');
        sb.append(String.format("\tdevice_cap_flags:\t\t0x%08x\n", flags));
        CAP_ORDER.stream().filter(a.caps()::contains).forEach(c -> sb.append("\t\t\t\t\t").append(c.name()).append('\n'));
        sb.append("\tmax_sge:\t\t\t").append(Math.min(a.maxSendSge(), a.maxRecvSge())).append('\n');
        sb.append("\tmax_sge_rd:\t\t\t").append(a.maxSgeRd()).append('\n');
        sb.append("\tmax_cq:\t\t\t\t").append(a.maxCq()).append('\n');
        sb.append("\tmax_cqe:\t\t\t").append(a.maxCqe()).append('\n');
        sb.append("\tmax_mr:\t\t\t\t").append(a.maxMr()).append('\n');
        sb.append("\tmax_pd:\t\t\t\t").append(a.maxPd()).append('\n');
        sb.append("\tmax_qp_rd_atom:\t\t\t").append(a.maxQpRdAtom()).append('\n');
        sb.append("\tmax_ee_rd_atom:\t\t\t0\n");
        sb.append("\tmax_res_rd_atom:\t\t").append(a.maxResRdAtom()).append('\n');
        sb.append("\tmax_qp_init_rd_atom:\t\t").append(a.maxQpInitRdAtom()).append('\n');
        sb.append("\tmax_ee_init_rd_atom:\t\t0\n");
        sb.append("\tatomic_cap:\t\t\tATOMIC_").append(a.atomicCap().name()).append(" (")
                .append(a.atomicCap().value()).append(")\n");
        sb.append("\tmax_ee:\t\t\t\t0\n\tmax_rdd:\t\t\t0\n");
        sb.append("\tmax_mw:\t\t\t\t").append(a.maxMw()).append('\n');
        sb.append("\tmax_raw_ipv6_qp:\t\t0\n\tmax_raw_ethy_qp:\t\t0\n\tmax_mcast_grp:\t\t\t0\n");
        sb.append("\tmax_mcast_qp_attach:\t\t0\n\tmax_total_mcast_qp_attach:\t0\n");
        sb.append("\tmax_ah:\t\t\t\t").append(a.maxAh()).append('\n');
        sb.append("\tmax_fmr:\t\t\t0\n");
        sb.append("\tmax_srq:\t\t\t").append(a.maxSrq()).append('\n');
        sb.append("\tmax_srq_wr:\t\t\t").append(a.maxSrqWr()).append('\n');
        sb.append("\tmax_srq_sge:\t\t\t").append(a.maxSrqSge()).append('\n');
        sb.append("\tmax_pkeys:\t\t\t").append(a.maxPkeys()).append('\n');
        sb.append("\tlocal_ca_ack_delay:\t\t").append(a.localCaAckDelay()).append('\n');
        sb.append("\tgeneral_odp_caps:\n");
        if (a.has(DeviceCap.ON_DEMAND_PAGING)) {
            sb.append("\t\t\t\t\tODP_SUPPORT\n");
        }
        sb.append("\trc_odp_caps:\n");
        odp(sb, a.rcOdpCaps());
        sb.append("\tuc_odp_caps:\n");
        odp(sb, Set.of());
        sb.append("\tud_odp_caps:\n");
        odp(sb, a.udOdpCaps());
        sb.append("\txrc_odp_caps:\n");
        odp(sb, Set.of());
        sb.append("\tcompletion_timestamp_mask not supported\n\tcore clock not supported\n");
        sb.append(String.format("\tdevice_cap_flags_ex:\t\t0x%X\n", flags));
        sb.append("\ttso_caps:\n\tmax_tso:\t\t\t0\n");
        sb.append("\trss_caps:\n\t\tmax_rwq_indirection_tables:\t\t\t0\n\t\tmax_rwq_indirection_table_size:\t\t\t0\n"
                + "\t\trx_hash_function:\t\t\t\t0x0\n\t\trx_hash_fields_mask:\t\t\t\t0x0\n");
        sb.append("\tmax_wq_type_rq:\t\t\t0\n");
        sb.append("\tpacket_pacing_caps:\n\t\tqp_rate_limit_min:\t0kbps\n\t\tqp_rate_limit_max:\t0kbps\n");
        sb.append("\ttag matching not supported\n");
    }

    /** {@code print_odp_trans_caps}. */
    private static void odp(StringBuilder sb, Set<OdpOp> ops) {
        if (ops.isEmpty()) {
            sb.append("\t\t\t\t\tNO SUPPORT\n");
            return;
        }
        for (OdpOp op : OdpOp.values()) {
            if (ops.contains(op)) {
                sb.append("\t\t\t\t\tSUPPORT_").append(op == OdpOp.SRQ_RECV ? "SRQ" : op.name()).append('\n');
            }
        }
    }

    /** One port: state, MTUs, LIDs, link layer; with {@code -v} the rest and the GID table. */
    private static void port(StringBuilder sb, RdmaDevice d, int p, boolean verbose) {
        PortAttr a = d.portAttr(p);
        sb.append("\t\tport:\t").append(p).append('\n');
        sb.append("\t\t\tstate:\t\t\tPORT_").append(a.state().name()).append(" (").append(a.state().value())
                .append(")\n");
        sb.append("\t\t\tmax_mtu:\t\t").append(a.maxMtu().bytes()).append(" (").append(a.maxMtu().value())
                .append(")\n");
        sb.append("\t\t\tactive_mtu:\t\t").append(a.activeMtu().bytes()).append(" (").append(a.activeMtu().value())
                .append(")\n");
        sb.append("\t\t\tsm_lid:\t\t\t0\n");
        sb.append("\t\t\tport_lid:\t\t").append(a.lid()).append('\n');
        sb.append("\t\t\tport_lmc:\t\t0x00\n");
        sb.append("\t\t\tlink_layer:\t\t").append(a.linkLayer() == LinkLayer.ETHERNET ? "Ethernet" : "InfiniBand")
                .append('\n');
        if (verbose) {
            sb.append(String.format("\t\t\tmax_msg_sz:\t\t0x%x\n", a.maxMsgSize()));
            sb.append(String.format("\t\t\tport_cap_flags:\t\t0x%08x\n", a.portCapFlags()));
            sb.append("\t\t\tport_cap_flags2:\t0x0000\n");
            sb.append("\t\t\tmax_vl_num:\t\t1 (1)\n");
            sb.append("\t\t\tbad_pkey_cntr:\t\t0x0\n\t\t\tqkey_viol_cntr:\t\t0x0\n\t\t\tsm_sl:\t\t\t0\n");
            sb.append("\t\t\tpkey_tbl_len:\t\t").append(a.pkeyTblLen()).append('\n');
            sb.append("\t\t\tgid_tbl_len:\t\t").append(a.gidTblLen()).append('\n');
            sb.append("\t\t\tsubnet_timeout:\t\t0\n\t\t\tinit_type_reply:\t0\n");
            sb.append("\t\t\tactive_width:\t\t").append(width(a.activeWidth())).append("X (")
                    .append(a.activeWidth()).append(")\n");
            sb.append("\t\t\tactive_speed:\t\t").append(speed(a.activeSpeed())).append(" (")
                    .append(a.activeSpeed()).append(")\n");
            sb.append("\t\t\tphys_state:\t\t").append(physState(a.physState())).append(" (").append(a.physState())
                    .append(")\n");
            for (GidEntry g : d.gidTable()) {
                if (g.portNum() == p && !g.gid().isZero()) {
                    gid(sb, g, a.linkLayer());
                }
            }
        }
        sb.append('\n');
    }

    /** {@code print_formated_gid}: RoCE v2 GIDs as {@code inet_ntop} writes them, the others as raw hex. */
    private static void gid(StringBuilder sb, GidEntry g, LinkLayer ll) {
        String type = ll != LinkLayer.ETHERNET ? "" : g.type() == GidType.ROCE_V2 ? ", RoCE v2" : ", RoCE v1";
        String text = g.type() == GidType.ROCE_V2 ? ntop(g.gid()) : g.gid().toString();
        sb.append(String.format("\t\t\tGID[%3d]:\t\t%s%s\n", g.index(), text, type));
    }

    /** glibc's {@code inet_ntop(AF_INET6)}: the longest run of two or more zero groups as {@code ::}. */
    static String ntop(Gid gid) {
        byte[] b = gid.raw();
        int[] w = new int[8];
        for (int i = 0; i < 8; i++) {
            w[i] = (b[2 * i] & 0xff) << 8 | (b[2 * i + 1] & 0xff);
        }
        int best = -1;
        int bestLen = 0;
        for (int i = 0; i < 8; ) {
            if (w[i] != 0) {
                i++;
                continue;
            }
            int j = i;
            while (j < 8 && w[j] == 0) {
                j++;
            }
            if (j - i > bestLen) {
                best = i;
                bestLen = j - i;
            }
            i = j;
        }
        if (bestLen < 2) {
            best = -1;
        }
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 8; i++) {
            if (best >= 0 && i >= best && i < best + bestLen) {
                if (i == best) {
                    sb.append(':');
                }
                continue;
            }
            if (i != 0) {
                sb.append(':');
            }
            boolean embeddedV4 = i == 6 && best == 0 && (bestLen == 6 || (bestLen == 5 && w[5] == 0xffff));
            if (embeddedV4) {
                sb.append(b[12] & 0xff).append('.').append(b[13] & 0xff).append('.').append(b[14] & 0xff)
                        .append('.').append(b[15] & 0xff);
                return sb.toString();
            }
            sb.append(Integer.toHexString(w[i]));
        }
        if (best >= 0 && best + bestLen == 8) {
            sb.append(':');
        }
        return sb.toString();
    }

    /** {@code width_str}. */
    private static String width(int w) {
        return switch (w) {
            case 1 -> "1";
            case 2 -> "4";
            case 4 -> "8";
            case 8 -> "12";
            case 16 -> "2";
            default -> "invalid width";
        };
    }

    /** {@code speed_str}. */
    private static String speed(int s) {
        return switch (s) {
            case 1 -> "2.5 Gbps";
            case 2 -> "5.0 Gbps";
            case 4, 8 -> "10.0 Gbps";
            case 16 -> "14.0 Gbps";
            case 32 -> "25.0 Gbps";
            case 64 -> "50.0 Gbps";
            default -> "invalid speed";
        };
    }

    /** {@code port_phy_state_str}. */
    private static String physState(int s) {
        return switch (s) {
            case 1 -> "SLEEP";
            case 2 -> "POLLING";
            case 3 -> "DISABLED";
            case 4 -> "PORT_CONFIGURATION TRAINNING";
            case 5 -> "LINK_UP";
            case 6 -> "LINK_ERROR_RECOVERY";
            case 7 -> "PHY TEST";
            default -> "invalid physical state";
        };
    }
}
