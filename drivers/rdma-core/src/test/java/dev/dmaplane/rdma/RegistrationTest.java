package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.loopback.LoopbackProvider;
import dev.dmaplane.rdma.spi.RdmaProvider;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.GidType;
import dev.dmaplane.rdma.verbs.LinkLayer;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.PortState;
import dev.dmaplane.rdma.verbs.VerbsContext;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.net.InetAddress;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Device registration as {@code ib_register_device} does it (names with {@code %d}, attributes read from the
 * driver, {@code setup_dma_device}'s segment size), the RoCEv2 GID table as {@code roce_gid_mgmt.c} fills it
 * from the netdev (default GID from the MAC, IPv4-mapped and IPv6 GIDs, stable indices), port queries
 * ({@code ibv_query_port(3)}, {@code iboe_get_mtu}) and port events ({@code ib_dispatch_event}: PORT_ERR,
 * PORT_ACTIVE, GID_CHANGE).
 */
class RegistrationTest {
    private final Fixture f = new Fixture();

    @AfterEach
    void close() {
        f.close();
    }

    @Test
    void bothHcaFunctionsRegisterAsNumberedDevices() {
        assertEquals(List.of("rxe0", "rxe1"), f.core.devices().stream().map(RdmaDevice::name).toList());
        RdmaDevice d = f.device();
        assertEquals("loopback", d.driverName());
        assertEquals(0x001da0fffe000001L, d.nodeGuid(), "rxe_init_device_param: the EUI-64 of eth0's MAC 02:1d:a0:00:00:01");
        assertEquals(0x001da0fffe000002L, f.core.device("rxe1").orElseThrow().nodeGuid(), "each HCA its own");
        assertTrue(d.isRegistered());
        assertEquals(Integer.MAX_VALUE, f.machine.pci().function("04:00.0").dma().maxSegmentSize(),
                "ib_core sets the DMA device's max segment size (SZ_2G, capped by the DMA API)");
    }

    @Test
    void namesAndAttributesAreChecked() {
        RdmaProvider p = f.provider();
        assertEquals(Errno.EEXIST, assertThrows(ErrnoException.class, () -> f.core.registerDevice("rxe0", p)).errno());
        for (String bad : new String[]{"", "a b", "x/y", "rxe%s", "rxe%d%d", "n".repeat(64)}) {
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> f.core.registerDevice(bad, p)).errno(), bad);
        }
        LoopbackProvider noPage = new LoopbackProvider(f.machine.pci().function("04:00.0"),
                Fixture.defaults().pageSizeCap(1L << 21).build(), LoopbackProvider.defaultNetdev("eth9", 9));
        ErrnoException e = assertThrows(ErrnoException.class, () -> f.core.registerDevice("bad%d", noPage));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("PAGE_SIZE"), e.getMessage());
        assertEquals(2, f.core.devices().size(), "a refused registration leaves nothing");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> DeviceAttr.builder().maxQp(0).build()).errno());
    }

    @Test
    void portAttributesFollowTheNetdev() {
        try (VerbsContext c = f.device().open(f.mm)) {
            PortAttr p = c.queryPort(1);
            assertEquals(PortState.ACTIVE, p.state());
            assertEquals(LinkLayer.ETHERNET, p.linkLayer());
            assertEquals(Mtu.MTU_1024, p.activeMtu(), "iboe_get_mtu(1500): 1500 - 96 header bytes leaves 1404, so 1024");
            assertEquals(Mtu.MTU_4096, Mtu.fromNetdevMtu(9000));
            assertEquals(Mtu.MTU_256, Mtu.fromNetdevMtu(352));
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> Mtu.fromNetdevMtu(351)).errno());
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> c.queryPort(2)).errno());
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> c.queryPort(0)).errno());
        }
    }

    @Test
    void gidTableHoldsTheDefaultGidThenOneRoceV2GidPerAddress() throws Exception {
        try (VerbsContext c = f.device().open(f.mm)) {
            List<GidEntry> t = c.queryGidTable();
            assertEquals(3, t.size());
            assertEquals(Gid.parse("fe80::1d:a0ff:fe00:1"), t.get(0).gid(), "MAC 02:1d:a0:00:00:01, U/L bit flipped, ff:fe inserted");
            assertEquals("0000:0000:0000:0000:0000:ffff:0a00:0001", t.get(1).gid().toString());
            assertTrue(t.get(1).gid().isIpv4Mapped());
            assertEquals(InetAddress.getByName("10.0.0.1"), t.get(1).gid().toInetAddress());
            assertEquals(Gid.parse("fd00::1"), t.get(2).gid());
            assertTrue(t.stream().allMatch(g -> g.type() == GidType.ROCE_V2 && g.portNum() == 1 && g.netdev().equals("eth0")));
            assertEquals(t.get(1).gid(), c.queryGid(1, 1));
            assertEquals(Gid.ZERO, c.queryGid(1, 15), "an empty entry reads as zero");
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> c.queryGid(1, 16)).errno());
        }
    }

    @Test
    void netdevChangesKeepIndicesAndRaiseGidChange() {
        LoopbackProvider p = f.provider();
        try (VerbsContext c = f.device().open(f.mm)) {
            // fd00::1 goes, 10.0.0.1 stays at index 1, 192.168.1.5 takes the freed index 2, fe80 duplicate is ignored
            p.setNetdev(LoopbackProvider.defaultNetdev("eth0", 1, "10.0.0.1", "192.168.1.5", "fe80::1d:a0ff:fe00:1"));
            p.handle().netdevChanged(1);
            List<GidEntry> t = c.queryGidTable();
            assertEquals(3, t.size());
            assertEquals(1, t.get(1).index());
            assertEquals(Gid.parse("::ffff:10.0.0.1"), t.get(1).gid());
            assertEquals(2, t.get(2).index());
            assertEquals(Gid.parse("::ffff:192.168.1.5"), t.get(2).gid());
            AsyncEvent e = c.pollAsyncEvent().orElseThrow();
            assertEquals(EventType.GID_CHANGE, e.type());
            assertEquals(18, e.type().value());
            assertEquals(1, e.portNum());
            e.ack();
            p.handle().netdevChanged(1);
            assertTrue(c.pollAsyncEvent().isEmpty(), "no change, no event");
        }
    }

    @Test
    void portStateEventsReachEveryContext() {
        LoopbackProvider p = f.provider();
        VerbsContext a = f.open();
        VerbsContext b = f.open();
        p.setPortState(PortState.DOWN);
        p.handle().portEvent(1, EventType.PORT_ERR);
        assertEquals(PortState.DOWN, a.queryPort(1).state());
        assertEquals(PortAttr.PHYS_DISABLED, a.queryPort(1).physState());
        p.setPortState(PortState.ACTIVE);
        p.handle().portEvent(1, EventType.PORT_ACTIVE);
        for (VerbsContext c : List.of(a, b)) {
            assertEquals(EventType.PORT_ERR, c.pollAsyncEvent().orElseThrow().type());
            AsyncEvent up = c.pollAsyncEvent().orElseThrow();
            assertEquals(EventType.PORT_ACTIVE, up.type());
            assertEquals(9, up.type().value());
            assertTrue(up.qp().isEmpty() && up.cq().isEmpty() && up.srq().isEmpty());
        }
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> p.handle().portEvent(1, EventType.QP_FATAL)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> p.handle().portEvent(3, EventType.PORT_ERR)).errno());
    }
}
