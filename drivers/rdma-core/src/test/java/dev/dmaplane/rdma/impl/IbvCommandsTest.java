package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.Fixture;
import dev.dmaplane.rdma.verbs.Gid;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code ibv_devices} and {@code ibv_devinfo} print what rdma-core's {@code libibverbs/examples/device_list.c} and
 * {@code devinfo.c} ({@code print_hca_cap}, {@code print_formated_gid}, the {@code -d}, {@code -i}, {@code -l} and
 * {@code -v} options of {@code main}) print, tabs included.
 */
class IbvCommandsTest {
    private final Fixture f = new Fixture();
    private final IbvCommands cmd = new IbvCommands(f.core);

    @AfterEach
    void close() {
        f.close();
    }

    @Test
    void devicesListsNamesAndNodeGuids() {
        assertEquals("    device          \t   node GUID\n"
                + "    ------          \t----------------\n"
                + "    rxe0            \t001da0fffe000001\n"
                + "    rxe1            \t001da0fffe000002", cmd.ibv_devices());
        assertEquals("2 HCAs found:\n\trxe0\n\trxe1", cmd.ibv_devinfo("-l"));
    }

    @Test
    void devinfoPrintsTheFieldsInRdmaCoresOrder() {
        String rxe1 = """
                hca_id:\trxe1
                \ttransport:\t\t\tInfiniBand (0)
                \tfw_ver:\t\t\t\t1.0.0
                \tnode_guid:\t\t\t001d:a0ff:fe00:0002
                \tsys_image_guid:\t\t\t0000:0000:0000:0000
                \tvendor_id:\t\t\t0x1da0
                \tvendor_part_id:\t\t\t2
                \thw_ver:\t\t\t\t0x0
                \tphys_port_cnt:\t\t\t1
                \t\tport:\t1
                \t\t\tstate:\t\t\tPORT_ACTIVE (4)
                \t\t\tmax_mtu:\t\t4096 (5)
                \t\t\tactive_mtu:\t\t1024 (3)
                \t\t\tsm_lid:\t\t\t0
                \t\t\tport_lid:\t\t0
                \t\t\tport_lmc:\t\t0x00
                \t\t\tlink_layer:\t\tEthernet""";
        assertEquals(rxe1, cmd.ibv_devinfo("-d", "rxe1"));
        assertEquals(rxe1, cmd.ibv_devinfo("--ib-dev=rxe1", "-i", "1"));
        assertEquals(cmd.ibv_devinfo("-d", "rxe0") + "\n\n" + rxe1, cmd.ibv_devinfo());
    }

    @Test
    void verboseAddsTheDeviceCapsAndTheGidTable() {
        String v = cmd.ibv_devinfo("-v", "-drxe0");
        assertTrue(v.contains("\tphys_port_cnt:\t\t\t1\n\tmax_mr_size:\t\t\t0x10000000000\n"), v);
        assertTrue(v.contains("\tdevice_cap_flags:\t\t0x01227400\n\t\t\t\t\tPORT_ACTIVE_EVENT\n\t\t\t\t\tRC_RNR_NAK_GEN\n"
                + "\t\t\t\t\tSRQ_RESIZE\n\t\t\t\t\tN_NOTIFY_CQ\n\t\t\t\t\tMEM_WINDOW\n\t\t\t\t\tMEM_MGT_EXTENSIONS\n"
                + "\t\t\t\t\tMEM_WINDOW_TYPE_2B\n\tmax_sge:\t\t\t32\n"), v);
        assertTrue(v.contains("\tatomic_cap:\t\t\tATOMIC_HCA (1)\n"), v);
        assertTrue(v.contains("\tgeneral_odp_caps:\n\t\t\t\t\tODP_SUPPORT\n\trc_odp_caps:\n\t\t\t\t\tSUPPORT_SEND\n"), v);
        assertTrue(v.contains("\tuc_odp_caps:\n\t\t\t\t\tNO SUPPORT\n"), v);
        assertTrue(v.contains("\t\t\tphys_state:\t\tLINK_UP (5)\n"
                + "\t\t\tGID[  0]:\t\tfe80::1d:a0ff:fe00:1, RoCE v2\n"
                + "\t\t\tGID[  1]:\t\t::ffff:10.0.0.1, RoCE v2"), v);
    }

    /** glibc's inet_ntop: the longest zero run compressed, IPv4-mapped and -compatible addresses dotted. */
    @Test
    void gidsAreWrittenAsInetNtopDoes() {
        assertEquals("fe80::1d:a0ff:fe00:1", IbvCommands.ntop(Gid.parse("fe80::1d:a0ff:fe00:1")));
        assertEquals("::ffff:10.0.0.1", IbvCommands.ntop(Gid.parse("::ffff:10.0.0.1")));
        assertEquals("::", IbvCommands.ntop(Gid.ZERO));
        assertEquals("1:0:1::", IbvCommands.ntop(Gid.parse("1:0:1:0:0:0:0:0")));
        assertEquals("1:0:2:0:3:0:4:0", IbvCommands.ntop(Gid.parse("1:0:2:0:3:0:4:0")));
    }

    @Test
    void badOptionsAreOneLineWithTheUsage() {
        assertError(Errno.ENODEV, "ibv_devinfo: IB device 'rxe9' wasn't found; usage: " + IbvCommands.USAGE,
                () -> cmd.ibv_devinfo("-d", "rxe9"));
        assertError(Errno.EINVAL, "ibv_devinfo: Invalid port requested for device rxe0: 2 (ports 1..1)",
                () -> cmd.ibv_devinfo("-d", "rxe0", "-i", "2"));
        assertError(Errno.EINVAL, "ibv_devinfo: port '0' is not a positive number below 1000; usage: "
                + IbvCommands.USAGE, () -> cmd.ibv_devinfo("-i", "0"));
        assertError(Errno.EINVAL, "ibv_devinfo: -d needs a value; usage: " + IbvCommands.USAGE,
                () -> cmd.ibv_devinfo("-d"));
        assertError(Errno.EINVAL, "ibv_devinfo: unknown option '-x'; usage: " + IbvCommands.USAGE,
                () -> cmd.ibv_devinfo("-x"));
        f.core.close();
        assertError(Errno.ENODEV, "ibv_devinfo: No IB devices found", cmd::ibv_devinfo);
    }

    private static void assertError(Errno errno, String message, Executable call) {
        ErrnoException e = assertThrows(ErrnoException.class, call);
        assertEquals(errno, e.errno());
        assertEquals(errno.name() + ": " + message, e.getMessage());
    }
}
