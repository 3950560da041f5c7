package dev.dmaplane.p2pdma;

import dev.dmaplane.device.BusType;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRoute;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Provider–client judgement as {@code calc_map_type_and_dist} and {@code pci_p2pdma_distance_many} in
 * {@code drivers/pci/p2pdma.c} make it: distance through the nearest common upstream bridge (4 for two devices under
 * one switch), BUS_ADDR without ACS redirect ({@code pci_bridge_has_acs_redir}: RR, CR or EC) on the path, else
 * THRU_HOST_BRIDGE if the host bridge whitelist allows it and NOT_SUPPORTED if not; -1 for the sum when any client
 * is not supported. On the default machine: GPU 03:00.0 and HCA 04:00.0 under one switch, HCA 05:00.0 and NVMe
 * 06:00.0 on root ports of their own, host bridge not whitelisted.
 */
class P2pDistanceTest {
    private final MachineFiles files = new MachineFiles();

    @AfterEach
    void close() {
        files.close();
    }

    private static PciFunction fn(Machine m, String bdf) {
        return m.pci().function(bdf);
    }

    @Test
    void twoDevicesUnderOneSwitchUseBusAddressesAtDistanceFour() {
        Machine m = files.boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction gpu = fn(m, "03:00.0");
        PciFunction hca = fn(m, "04:00.0");

        P2pDistance d = p2p.distance(gpu, List.of(hca));
        assertEquals(MapType.BUS_ADDR, d.mapType());
        assertEquals(4, d.distance(), "HCA -> its port -> switch upstream port -> GPU's port -> GPU");
        assertTrue(d.reason().contains("common upstream bridge 0000:01:00.0"), d.reason());
        assertEquals(List.of(), d.paths().getFirst().acsRedirects());

        assertEquals(0, p2p.distance(gpu, List.of(gpu)).distance(), "the provider as its own client");
        assertEquals(MapType.BUS_ADDR, p2p.distance(gpu, List.of(gpu)).mapType());
        assertEquals(4, p2p.distance(gpu, List.of(hca, gpu)).distance(), "distances add up over the clients");
        assertEquals(4, p2p.distance(hca, List.of(gpu)).distance(), "and the walk is symmetric here");
        assertEquals(MapType.BUS_ADDR, p2p.mapType(gpu, hca));
    }

    @Test
    void acrossRootPortsTheHostBridgeDecidesAndThisOneSaysNo() {
        Machine m = files.boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction gpu = fn(m, "03:00.0");

        P2pDistance d = p2p.distance(gpu, List.of(fn(m, "05:00.0")));
        assertEquals(MapType.NOT_SUPPORTED, d.mapType());
        assertEquals(-1, d.distance());
        assertFalse(d.supported());
        assertTrue(d.reason().contains("share no upstream bridge"), d.reason());
        assertTrue(d.reason().contains("host bridge pci0000:00 is not on the P2PDMA whitelist"), d.reason());

        P2pDistance mixed = p2p.distance(gpu, List.of(fn(m, "04:00.0"), fn(m, "05:00.0")));
        assertEquals(-1, mixed.distance(), "one unsupported client spoils the set");
        assertEquals(MapType.NOT_SUPPORTED, mixed.mapType());
        assertEquals(MapType.BUS_ADDR, mixed.paths().get(0).mapType());
        assertEquals(2, mixed.reason().lines().count());

        assertEquals(MapType.NOT_SUPPORTED, p2p.distance(gpu, List.of()).mapType(), "no clients, no verdict");
    }

    @Test
    void aWhitelistedHostBridgeCarriesTheTrafficAtTheFullDistance() {
        Machine m = files.hostBridgeAllowsP2p().boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction gpu = fn(m, "03:00.0");

        P2pDistance d = p2p.distance(gpu, List.of(fn(m, "05:00.0")));
        assertEquals(MapType.THRU_HOST_BRIDGE, d.mapType());
        assertEquals(6, d.distance(), "four steps from the GPU to the root bus plus two from the HCA");
        assertTrue(d.reason().contains("allows peer-to-peer DMA"), d.reason());
        P2pDistance both = p2p.distance(gpu, List.of(fn(m, "04:00.0"), fn(m, "05:00.0")));
        assertEquals(MapType.THRU_HOST_BRIDGE, both.mapType(), "the most restrictive client decides the type");
        assertEquals(10, both.distance());
    }

    @Test
    void acsRedirectOnTheSwitchPortsForcesTheHostBridge() {
        Machine m = files.downstreamPortsAcs("[SV, RR, CR, UF]").boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction gpu = fn(m, "03:00.0");
        P2pDistance d = p2p.distance(gpu, List.of(fn(m, "04:00.0")));
        assertEquals(MapType.NOT_SUPPORTED, d.mapType());
        assertEquals(List.of("0000:02:00.0", "0000:02:01.0"), d.paths().getFirst().acsRedirects().stream().map(f -> f.bdf().toString()).toList());
        assertTrue(d.reason().contains("pci=disable_acs_redir=0000:02:00.0;0000:02:01.0"), d.reason());
        assertTrue(d.reason().contains("not on the P2PDMA whitelist"), d.reason());

        Machine allowed = new MachineFiles().downstreamPortsAcs("[SV, RR, CR, UF]").hostBridgeAllowsP2p().boot();
        try {
            P2pDistance t = P2pDma.of(allowed).distance(fn(allowed, "03:00.0"), List.of(fn(allowed, "04:00.0")));
            assertEquals(MapType.THRU_HOST_BRIDGE, t.mapType());
            assertEquals(4, t.distance(), "the distance is still counted through the common bridge");
        } finally {
            allowed.close();
        }
    }

    @Test
    void completionRedirectAloneMakesTheKernelCautiousThoughRequestsStayInTheSwitch() {
        Machine m = files.downstreamPortsAcs("{capability: [SV, RR, CR, UF], control: [CR]}").boot();
        PciFunction gpu = fn(m, "03:00.0");
        PciFunction hca = fn(m, "04:00.0");
        assertEquals(MapType.NOT_SUPPORTED, P2pDma.of(m).mapType(gpu, hca), "pci_bridge_has_acs_redir counts CR");
        assertInstanceOf(PciRoute.Peer.class, m.pci().route(hca, gpu.bar(2).orElseThrow().address()),
                "CR reroutes completions only: the request itself is still switched");
    }

    @Test
    void theKernelVerdictAndTheFabricAgree() {
        for (MachineFiles f : List.of(new MachineFiles(), new MachineFiles().downstreamPortsAcs("[SV, RR, CR, UF]"),
                new MachineFiles().hostBridgeAllowsP2p(), new MachineFiles().nvmeCmb().switchHcaMemory())) {
            try (f) {
                Machine m = f.boot();
                P2pDma p2p = P2pDma.of(m);
                for (PciFunction provider : m.pci().functions()) {
                    for (Bar bar : provider.bars()) {
                        for (PciFunction client : m.pci().functions()) {
                            if (client.isBridge()) {
                                continue;
                            }
                            MapType t = p2p.mapType(provider, client);
                            PciRoute r = m.pci().route(client, bar.address());
                            assertEquals(t == MapType.BUS_ADDR, r instanceof PciRoute.Peer,
                                    client.bdf() + " -> " + provider.bdf() + " BAR" + bar.index() + ": " + t + " but " + r);
                        }
                    }
                }
            }
        }
    }

    @Test
    void clientsAreJudgedByTheirPciFunction() {
        Machine m = files.boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction gpu = fn(m, "03:00.0");
        Device aux = m.devices().addAuxDevice(fn(m, "04:00.0"), "hca", "rdma", 0, null);
        P2pDistance d = p2p.distance(gpu, List.of(aux));
        assertEquals(MapType.BUS_ADDR, d.mapType());
        assertEquals(4, d.distance());
        assertTrue(d.reason().startsWith("hca.rdma.0 (PCI function 0000:04:00.0)"), d.reason());

        Device virtual = new Device("virt0", null) {
            @Override
            public BusType bus() {
                return BusType.AUXILIARY;
            }

            @Override
            public boolean matches(MatchEntry entry) {
                return false;
            }
        };
        P2pDistance none = p2p.distance(gpu, List.of(virtual));
        assertEquals(MapType.NOT_SUPPORTED, none.mapType());
        assertTrue(none.reason().contains("not a PCI device"), none.reason());
    }

    /**
     * {@code pci_p2pdma_distance_many(..., verbose)} in {@code drivers/pci/p2pdma.c} warns only when verbose: asked
     * quietly, the same verdict and no trace event.
     */
    @Test
    void aQuietQueryJudgesAlikeAndTracesNothing() {
        Machine m = files.boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction gpu = fn(m, "03:00.0");
        List<PciFunction> clients = List.of(fn(m, "04:00.0"), fn(m, "05:00.0"));
        long before = m.tracer().lastSeq();
        P2pDistance quiet = p2p.distance(gpu, clients, false);
        assertEquals(List.of(), m.tracer().since(before).stream().filter(e -> e.kind() == TraceKind.P2PDMA).toList());
        assertEquals(p2p.distance(gpu, clients), quiet);
        assertEquals(2, m.tracer().since(before).stream().filter(e -> e.kind() == TraceKind.P2PDMA).count(),
                "verbose traces each client's verdict");
        Machine other = new MachineFiles().boot();
        try {
            assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class,
                    () -> p2p.distance(other.pci().function("03:00.0"), clients, false)).errno());
        } finally {
            other.close();
        }
    }

    @Test
    void decisionsAreTracedAndForeignProvidersRefused() {
        Machine m = files.boot();
        P2pDma p2p = P2pDma.of(m);
        long before = m.tracer().lastSeq();
        p2p.distance(fn(m, "03:00.0"), List.of(fn(m, "05:00.0")));
        var events = m.tracer().since(before).stream().filter(e -> e.kind() == TraceKind.P2PDMA).toList();
        assertEquals(1, events.size());
        assertEquals("0000:05:00.0", events.getFirst().device());
        assertTrue(events.getFirst().detail().startsWith("NOT_SUPPORTED to 0000:03:00.0"), events.getFirst().detail());

        Machine other = new MachineFiles().boot();
        try {
            assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class,
                    () -> p2p.distance(other.pci().function("03:00.0"), List.of(fn(m, "04:00.0")))).errno());
        } finally {
            other.close();
        }
    }
}
