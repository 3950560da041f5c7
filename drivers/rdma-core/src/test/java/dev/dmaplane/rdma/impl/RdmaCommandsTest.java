package dev.dmaplane.rdma.impl;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.Fixture;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.rdma.verbs.VerbsContext;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.io.IOException;
import java.util.List;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The {@code rdma:} Gogo commands print what iproute2's {@code rdma} prints: the lines of {@code rdma/dev.c}
 * ({@code dev_parse_cb}), {@code link.c} ({@code link_parse_cb}), {@code res.c} ({@code res_no_args_parse_cb}),
 * {@code res-qp.c}, {@code res-cq.c}, {@code res-mr.c}, {@code res-pd.c}, {@code res-ctx.c}, {@code res-srq.c} and
 * {@code stat.c}, the filters of {@code utils.c} ({@code rd_check_is_filtered}), and with {@code -j}/{@code -p} the
 * JSON of {@code lib/json_writer.c}.
 */
class RdmaCommandsTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final Fixture f = new Fixture();
    private final RdmaCommands cmd = new RdmaCommands(f.core);

    @AfterEach
    void close() {
        f.close();
    }

    /** {@code rdma dev}, {@code rdma link}: dev.c's and link.c's lines for a RoCE device and port. */
    @Test
    void devAndLinkLines() {
        assertEquals("""
                0: rxe0: node_type ca protocol roce fw 1.0.0 node_guid 001d:a0ff:fe00:0001 sys_image_guid 0000:0000:0000:0000
                1: rxe1: node_type ca protocol roce fw 1.0.0 node_guid 001d:a0ff:fe00:0002 sys_image_guid 0000:0000:0000:0000""",
                cmd.dev());
        assertEquals("1: rxe1: node_type ca protocol roce fw 1.0.0 node_guid 001d:a0ff:fe00:0002 "
                + "sys_image_guid 0000:0000:0000:0000", cmd.dev("show", "rxe1"));
        assertEquals("""
                link rxe0/1 state ACTIVE physical_state LINK_UP netdev eth0
                link rxe1/1 state ACTIVE physical_state LINK_UP netdev eth1""", cmd.link());
        assertEquals("link rxe1/1 state ACTIVE physical_state LINK_UP netdev eth1", cmd.link("show", "rxe1/1"));
        assertEquals(cmd.link("show", "rxe1/1"), cmd.link("list", "rxe1"));
        assertEquals("0: rxe0: pd 0 cq 0 qp 0 cm_id 0 mr 0 ctx 0 srq 0", cmd.res("show", "rxe0"));
        f.core.close();
        assertEquals("no RDMA devices", cmd.dev());
        assertEquals("[]", cmd.dev("-j"));
        assertEquals("[ ]", cmd.dev("-p"));
    }

    /**
     * The number before a device's name is its {@code ib_device->index}, given cyclically at registration
     * ({@code drivers/infiniband/core/device.c} {@code assign_name}: {@code xa_alloc_cyclic}), not its place in the
     * list: when rxe0 leaves, rxe1 stays 1, and the next device gets 2, not 0.
     */
    @Test
    void aDeviceKeepsItsIndexWhenAnotherLeaves() {
        f.machine.devices().unbind(f.machine.pci().function("04:00.0"));
        assertEquals("1: rxe1: node_type ca protocol roce fw 1.0.0 node_guid 001d:a0ff:fe00:0002 "
                + "sys_image_guid 0000:0000:0000:0000", cmd.dev());
        assertTrue(cmd.link("-j").startsWith("[{\"ifindex\":1,\"ifname\":\"rxe1\""), cmd.link("-j"));
        assertTrue(cmd.res().startsWith("1: rxe1: "), cmd.res());
        f.machine.devices().bind(f.machine.pci().function("04:00.0"), f.driver);
        assertEquals(List.of(1, 2), f.core.devices().stream().map(d -> d.index()).toList(), "the new device is 2");
    }

    /** {@code -j} is json_writer.c's one line, {@code -p} its pretty form; both parse as JSON. */
    @Test
    void jsonAndPrettyJson() throws IOException {
        assertEquals("[{\"ifindex\":0,\"ifname\":\"rxe0\",\"port\":1,\"state\":\"ACTIVE\",\"physical_state\":"
                + "\"LINK_UP\",\"netdev\":\"eth0\"}]", cmd.link("-j", "show", "rxe0/1"));
        assertEquals("""
                [ {
                        "ifindex": 0,
                        "ifname": "rxe0",
                        "node_type": "ca",
                        "protocol": "roce",
                        "fw": "1.0.0",
                        "node_guid": "001d:a0ff:fe00:0001",
                        "sys_image_guid": "0000:0000:0000:0000"
                    },{
                        "ifindex": 1,
                        "ifname": "rxe1",
                        "node_type": "ca",
                        "protocol": "roce",
                        "fw": "1.0.0",
                        "node_guid": "001d:a0ff:fe00:0002",
                        "sys_image_guid": "0000:0000:0000:0000"
                    } ]""", cmd.dev("-p"));
        assertEquals(cmd.dev("-jp"), cmd.dev("show", "-j", "--pretty"));
        objects();
        for (String[] a : new String[][]{{"-j"}, {"-p"}, {"-j", "show", "qp"}, {"-p", "show", "srq"},
                {"-j", "show", "mr"}, {"-j", "show", "cq"}, {"-j", "show", "pd"}, {"-j", "show", "ctx"}}) {
            JsonNode n = JSON.readTree(cmd.res(a));
            assertTrue(n.isArray() && !n.isEmpty(), String.join(" ", a));
            assertEquals("rxe0", n.get(0).get("ifname").asText());
        }
        for (String[] a : new String[][]{{"-j"}, {"-p"}}) {
            assertEquals(2, JSON.readTree(cmd.dev(a)).size());
            assertEquals("LINK_UP", JSON.readTree(cmd.link(a)).get(1).get("physical_state").asText());
            assertEquals(1, JSON.readTree(cmd.statistic(a)).get(0).get("port").asInt());
        }
        JsonNode qp = JSON.readTree(cmd.res("-j", "show", "qp", "lqpn", "17"));
        assertEquals(16, qp.get(0).get("rqpn").asInt());
        assertEquals(Integer.toHexString(mr.rkey()), JSON.readTree(cmd.res("-j", "show", "mr")).get(0).get("rkey").asText(),
                "print_key: hex digits without 0x in JSON");
        assertEquals("19", JSON.readTree(cmd.res("-j", "show", "srq")).get(0).get("lqpn").get(0).asText());
    }

    /** {@code rdma res} and {@code rdma res show TYPE}: res.c's summary and each res-*.c line's columns. */
    @Test
    void resourceLines() {
        objects();
        assertEquals("""
                0: rxe0: pd 1 cq 1 qp 4 cm_id 0 mr 1 ctx 1 srq 1
                1: rxe1: pd 0 cq 0 qp 0 cm_id 0 mr 0 ctx 0 srq 0""", cmd.res());
        assertEquals("""
                link rxe0/1 lqpn 16 rqpn 17 type RC state RTS rq-psn 0 sq-psn 0 path-mig-state MIGRATED pdn 1 pid 1 comm app
                link rxe0/1 lqpn 17 rqpn 16 type RC state RTS rq-psn 0 sq-psn 0 path-mig-state MIGRATED pdn 1 pid 1 comm app
                link rxe0/- lqpn 18 type UD state RESET sq-psn 0 pdn 1 pid 1 comm app
                link rxe0/- lqpn 19 rqpn 0 type RC state RESET rq-psn 0 sq-psn 0 path-mig-state MIGRATED pdn 1 pid 1 comm app""",
                cmd.res("show", "qp"));
        assertEquals("dev rxe0 cqn 1 cqe 8 users 8 ctxn 0 pid 1 comm app", cmd.res("show", "cq"));
        assertEquals("dev rxe0 mrn 1 rkey 0x" + Integer.toHexString(mr.rkey()) + " lkey 0x"
                + Integer.toHexString(mr.lkey()) + " iova 0x" + Long.toHexString(buffer) + " mrlen 65536 pdn 1 "
                + "pid 1 comm app", cmd.res("show", "mr"));
        assertEquals("dev rxe0 pdn 1 users 6 ctxn 0 pid 1 comm app", cmd.res("show", "pd"));
        assertEquals("dev rxe0 ctxn 0 pid 1 comm app", cmd.res("show", "ctx"));
        assertEquals("dev rxe0 srqn 1 type BASIC lqpn 19 pdn 1 pid 1 comm app", cmd.res("show", "srq"));
        assertEquals("", cmd.res("show", "qp", "dev", "rxe1"), "no object: nothing, as rdma prints");
    }

    /** The filters of utils.c: N, N-M, comma lists, strings in any case, link DEV/PORT; a missing attribute. */
    @Test
    void resourceFilters() {
        objects();
        assertEquals("link rxe0/1 lqpn 17 rqpn 16 type RC state RTS rq-psn 0 sq-psn 0 path-mig-state MIGRATED pdn 1 "
                + "pid 1 comm app", cmd.res("show", "qp", "lqpn", "17", "type", "RC"));
        assertEquals(lqpns(16, 17, 19), lqpns(cmd.res("show", "qp", "type", "rc")));
        assertEquals(lqpns(16, 17, 18), lqpns(cmd.res("show", "qp", "lqpn", "16-18")));
        assertEquals(lqpns(16, 18, 19), lqpns(cmd.res("show", "qp", "lqpn", "16,18-19")));
        assertEquals(lqpns(18, 19), lqpns(cmd.res("show", "qp", "state", "RESET")));
        assertEquals(lqpns(16, 17), lqpns(cmd.res("show", "qp", "link", "rxe0/1")));
        assertEquals(lqpns(16, 17, 19), lqpns(cmd.res("show", "qp", "rqpn", "0-100")), "a UD QP has no rqpn");
        assertEquals(lqpns(16, 17, 18, 19), lqpns(cmd.res("show", "qp", "pid", "1", "dev", "rxe0")));
        assertEquals("", cmd.res("show", "qp", "pid", "2"));
        assertEquals("dev rxe0 pdn 1 users 6 ctxn 0 pid 1 comm app", cmd.res("show", "pd", "pdn", "1", "ctxn", "0"));
        assertEquals("", cmd.res("show", "srq", "lqpn", "16"));
    }

    /** A bad device, port, object, filter or value is one line with the command's usage. */
    @Test
    void badWordsAreOneLineWithTheUsage() {
        objects();
        assertError(Errno.ENODEV, "rdma:dev show rxe9: no RDMA device 'rxe9' (rxe0, rxe1); usage: "
                + RdmaCommands.DEV_USAGE, () -> cmd.dev("show", "rxe9"));
        assertError(Errno.EINVAL, "rdma:link show rxe0/2: port '2' of rxe0 is not in 1..1; usage: "
                + RdmaCommands.LINK_USAGE, () -> cmd.link("show", "rxe0/2"));
        assertError(Errno.ENODEV, "rdma:statistic show link rxe7/1: no RDMA device 'rxe7' (rxe0, rxe1); usage: "
                + RdmaCommands.STAT_USAGE, () -> cmd.statistic("show", "link", "rxe7/1"));
        assertError(Errno.EINVAL, "rdma:res show qp foo 1: unknown filter 'foo' for qp (filters: lqpn, rqpn, pdn, "
                + "rq-psn, sq-psn, path-mig-state, type, state, pid); usage: " + RdmaResources.USAGE,
                () -> cmd.res("show", "qp", "foo", "1"));
        assertError(Errno.EINVAL, "rdma:res show qp lqpn x: lqpn filter 'x' accepts \"1234567890,-\" characters "
                + "only; usage: " + RdmaResources.USAGE, () -> cmd.res("show", "qp", "lqpn", "x"));
        assertError(Errno.EINVAL, "rdma:res show qp lqpn 1-2-3: lqpn filter '1-2-3': '1-2-3' is not N or N-M with "
                + "N, M below 2^32; usage: " + RdmaResources.USAGE, () -> cmd.res("show", "qp", "lqpn", "1-2-3"));
        assertError(Errno.EINVAL, "rdma:res show qp lqpn 99999999999: lqpn filter '99999999999': '99999999999' is "
                + "not N or N-M with N, M below 2^32; usage: " + RdmaResources.USAGE,
                () -> cmd.res("show", "qp", "lqpn", "99999999999"));
        assertError(Errno.EINVAL, "rdma:res show qp type: 'type' needs a value; usage: " + RdmaResources.USAGE,
                () -> cmd.res("show", "qp", "type"));
        assertError(Errno.EINVAL, "rdma:res show mw: 'mw' is neither an object type (qp, cq, mr, pd, ctx, srq) nor "
                + "an RDMA device; usage: " + RdmaResources.USAGE, () -> cmd.res("show", "mw"));
        assertError(Errno.EINVAL, "rdma:dev: unknown option '-x' (-j JSON, -p pretty JSON)", () -> cmd.dev("-x"));
        assertError(Errno.EINVAL, "rdma:link rxe0: unknown command 'rxe0' (show); usage: " + RdmaCommands.LINK_USAGE,
                () -> cmd.link("rxe0"));
    }

    private long buffer;
    private MemoryRegion mr;

    /** On rxe0: a PD, a 64 KiB MR, a CQ, two connected RC QPs, a UD QP in RESET, an SRQ with an RC QP on it. */
    private void objects() {
        VerbsContext c = f.open();
        ProtectionDomain pd = c.allocPd();
        buffer = f.alloc(1 << 16);
        mr = pd.regMr(buffer, 1 << 16, Access.LOCAL_WRITE);
        CompletionQueue cq = c.createCq(8, null, 0);
        Fixture.pair(pd, cq, QpType.RC, 4);
        pd.createQp(Fixture.qpInit(cq, QpType.UD, 4));
        SharedReceiveQueue srq = pd.createSrq(new SrqAttr(4, 1, 0));
        pd.createQp(new QpInitAttr(cq, cq, srq, new QpCap(4, 0, 4, 0, 64), QpType.RC, false));
    }

    private static List<Integer> lqpns(int... n) {
        return IntStream.of(n).boxed().toList();
    }

    private static List<Integer> lqpns(String lines) {
        return lines.lines().map(l -> Integer.parseInt(l.split(" ")[3])).toList();
    }

    private static void assertError(Errno errno, String message, Executable call) {
        ErrnoException e = assertThrows(ErrnoException.class, call);
        assertEquals(errno, e.errno());
        assertEquals(errno.name() + ": " + message, e.getMessage());
    }
}
