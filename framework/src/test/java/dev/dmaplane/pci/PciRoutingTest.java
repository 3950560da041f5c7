package dev.dmaplane.pci;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciRoute.Peer;
import dev.dmaplane.pci.PciRoute.RootComplex;
import dev.dmaplane.pci.PciRoute.Unsupported;
import dev.dmaplane.pci.TopologyLoader.Format;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static dev.dmaplane.pci.Machines.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Address routing of device requests below the root complex, as the PCIe Base Spec defines it for bridges and switch
 * ports: a request goes down into a bridge whose memory window claims it and up through one whose windows do not;
 * ACS P2P Request Redirect at the ingress port sends would-be peer traffic up to the root complex, and a port passes
 * such a redirected request for its own secondary side upward only with ACS Upstream Forwarding ({@code PCI_ACS_RR},
 * {@code PCI_ACS_UF} in {@code include/uapi/linux/pci_regs.h}, set by {@code pci_std_enable_acs} in
 * {@code drivers/pci/pci.c}). The default machine: GPU 03:00.0 and HCA 04:00.0 under one switch without ACS, HCA
 * 05:00.0 under another root port.
 */
class PciRoutingTest {
    private static final String REQ = "[SV, RR, CR, UF]";
    private static final String DSP_KEYS = "                  device: \"0x1002\"\n                  class: \"0x060400\"\n";

    /** The default machine with ACS {@code acs} enabled on both switch downstream ports. */
    static String defaultWithDownstreamPortAcs(String acs) {
        String text = TopologyLoader.defaultMachineText();
        assertEquals(2, text.split(DSP_KEYS, -1).length - 1, "the default machine has two downstream ports");
        return text.replace(DSP_KEYS, DSP_KEYS + "                  acs: " + acs + "\n");
    }

    private static List<String> bdfs(List<PciFunction> fns) {
        return fns.stream().map(f -> f.bdf().toString()).toList();
    }

    @Test
    void switchRoutesBetweenItsDownstreamPortsWithoutTheRootComplex() {
        try (PciTopology t = TopologyLoader.defaultMachine()) {
            PciFunction gpu = t.function("03:00.0");
            PciFunction hca = t.function("04:00.0");
            Bar vram = gpu.bar(2).orElseThrow();

            Peer p = assertInstanceOf(Peer.class, t.route(hca, vram.address() + 0x1234));
            assertSame(gpu, p.target());
            assertSame(vram, p.bar());
            assertEquals(0x1234, p.offset());
            assertEquals(List.of("0000:02:01.0", "0000:02:00.0"), bdfs(p.bridges()), "up through its port, down through the GPU's");

            Peer last = assertInstanceOf(Peer.class, t.route(hca, vram.address() + vram.size() - 1));
            assertEquals(vram.size() - 1, last.offset());
            assertEquals(0, assertInstanceOf(Peer.class, t.route(hca, gpu.bar(0).orElseThrow().address())).bar().index(),
                    "the switch routes to a register BAR the same way");

            Peer back = assertInstanceOf(Peer.class, t.route(gpu, hca.bar(0).orElseThrow().address() + 8));
            assertSame(hca, back.target());
            assertEquals(List.of("0000:02:00.0", "0000:02:01.0"), bdfs(back.bridges()));
        }
    }

    @Test
    void anAddressNoPeerBelowTheRootPortClaimsGoesToTheRootComplex() {
        try (PciTopology t = TopologyLoader.defaultMachine()) {
            PciFunction hca = t.function("04:00.0");
            RootComplex ram = assertInstanceOf(RootComplex.class, t.route(hca, 0x1000));
            assertEquals("0000:00:01.0", ram.entry().bdf().toString());
            assertEquals(Optional.empty(), ram.redirectedBy());

            long vram = t.function("03:00.0").bar(2).orElseThrow().address();
            RootComplex across = assertInstanceOf(RootComplex.class, t.route(t.function("05:00.0"), vram));
            assertEquals("0000:00:02.0", across.entry().bdf().toString(), "another root port: only the root complex connects them");
            assertTrue(across.reason().contains("no bridge below the root complex claims it"), across.reason());
        }
    }

    @Test
    void aFunctionDecodesItsOwnBarWithoutTheBus() {
        try (PciTopology t = TopologyLoader.defaultMachine()) {
            PciFunction gpu = t.function("03:00.0");
            Peer self = assertInstanceOf(Peer.class, t.route(gpu, gpu.bar(2).orElseThrow().address() + 4096));
            assertSame(gpu, self.target());
            assertEquals(List.of(), self.bridges());
        }
    }

    @Test
    void requestRedirectOnTheIngressPortSendsPeerTrafficToTheRootComplex() {
        try (PciTopology t = TopologyLoader.load(defaultWithDownstreamPortAcs(REQ), Format.YAML)) {
            PciFunction gpu = t.function("03:00.0");
            PciFunction hca = t.function("04:00.0");
            RootComplex r = assertInstanceOf(RootComplex.class, t.route(hca, gpu.bar(2).orElseThrow().address()));
            assertEquals("0000:02:01.0", r.redirectedBy().orElseThrow().bdf().toString(), "the HCA's port redirects");
            assertEquals("0000:00:01.0", r.entry().bdf().toString());
            assertTrue(r.reason().contains("ACS P2P Request Redirect at 0000:02:01.0"), r.reason());

            RootComplex back = assertInstanceOf(RootComplex.class, t.route(gpu, hca.bar(0).orElseThrow().address()));
            assertEquals("0000:02:00.0", back.redirectedBy().orElseThrow().bdf().toString());
        }
    }

    @Test
    void redirectOnOnlyOnePortStopsOnlyTheTrafficThatEntersThere() {
        String oneSided = TopologyLoader.defaultMachineText().replaceFirst(DSP_KEYS, DSP_KEYS + "                  acs: " + REQ + "\n");
        try (PciTopology t = TopologyLoader.load(oneSided, Format.YAML)) {
            PciFunction gpu = t.function("03:00.0");
            PciFunction hca = t.function("04:00.0");
            assertInstanceOf(RootComplex.class, t.route(gpu, hca.bar(0).orElseThrow().address()), "02:00.0 redirects the GPU's requests");
            assertInstanceOf(Peer.class, t.route(hca, gpu.bar(2).orElseThrow().address()), "02:01.0 has no ACS: the HCA's go direct");
        }
    }

    @Test
    void aRedirectedRequestNeedsUpstreamForwardingWhereItWouldTurnBack() {
        String noUfAtRoot = defaultWithDownstreamPortAcs(REQ).replaceFirst("          acs: \\[SV, RR, CR, UF]\n", "          acs: [SV, RR, CR]\n");
        try (PciTopology t = TopologyLoader.load(noUfAtRoot, Format.YAML)) {
            assertFalse(t.function("00:01.0").acs().orElseThrow().uf());
            Unsupported u = assertInstanceOf(Unsupported.class,
                    t.route(t.function("04:00.0"), t.function("03:00.0").bar(2).orElseThrow().address()));
            assertEquals("0000:00:01.0", u.at().bdf().toString());
            assertTrue(u.reason().contains("no ACS Upstream Forwarding"), u.reason());
        }
    }

    @Test
    void multifunctionRequestRedirectGoesUpAndNeedsUpstreamForwarding() {
        String plain = rootPortWith(REQ, endpoint("01:00.0", "multifunction: true") + "\n" + endpoint("01:00.1"));
        try (PciTopology t = TopologyLoader.load(plain, Format.YAML)) {
            Peer p = assertInstanceOf(Peer.class, t.route(t.function("01:00.0"), t.function("01:00.1").bar(0).orElseThrow().address()));
            assertEquals(List.of(), p.bridges(), "functions of one device reach each other on their own bus");
        }
        String redirecting = rootPortWith(REQ, endpoint("01:00.0", "multifunction: true\nacs: " + REQ) + "\n" + endpoint("01:00.1"));
        try (PciTopology t = TopologyLoader.load(redirecting, Format.YAML)) {
            RootComplex r = assertInstanceOf(RootComplex.class,
                    t.route(t.function("01:00.0"), t.function("01:00.1").bar(0).orElseThrow().address()));
            assertEquals("0000:01:00.0", r.redirectedBy().orElseThrow().bdf().toString());
        }
        String noUf = rootPortWith("[SV, RR, CR]", endpoint("01:00.0", "multifunction: true\nacs: " + REQ) + "\n" + endpoint("01:00.1"));
        try (PciTopology t = TopologyLoader.load(noUf, Format.YAML)) {
            Unsupported u = assertInstanceOf(Unsupported.class,
                    t.route(t.function("01:00.0"), t.function("01:00.1").bar(0).orElseThrow().address()));
            assertEquals("0000:00:01.0", u.at().bdf().toString());
        }
    }

    /**
     * A peer leaving its slot while a request to its BAR is routed (a surprise removal under peer-to-peer DMA; PCIe
     * Base Spec: a request nothing decodes any more is an Unsupported Request): the route is the BAR at the offset
     * its decoder matched, or Unsupported, never a BAR at an offset computed from a second read of a base register
     * that reads all ones by then. The GPU's slot empties and fills on another thread while the HCA's requests are
     * routed, until the routes have seen it change 1000 times; before the fix, 0.3 to 3 % of the routes to a
     * present BAR came back at a bogus offset, and in the GPU unplug storm the HCA's DMA failed on one (a negative
     * transfer length) and its device was disassociated.
     */
    @Test
    void aPeerLeavingItsSlotMidRouteIsUnsupportedNotABarAtABogusOffset() throws InterruptedException {
        try (PciTopology t = TopologyLoader.defaultMachine()) {
            PciFunction gpu = t.function("03:00.0");
            PciFunction hca = t.function("04:00.0");
            long addr = gpu.bar(2).orElseThrow().address() + 0x1234;
            AtomicBoolean stop = new AtomicBoolean();
            CountDownLatch toggling = new CountDownLatch(1);
            Thread slot = Thread.ofPlatform().name("routing-test slot").start(() -> {
                toggling.countDown();
                while (!stop.get()) {
                    gpu.configSpace().setPresent(false);
                    Thread.onSpinWait();
                    gpu.configSpace().setPresent(true);
                    Thread.onSpinWait();
                }
            });
            try {
                assertTrue(toggling.await(10, TimeUnit.SECONDS), "the slot thread started");
                boolean wasPeer = true;
                int changes = 0;
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                for (int i = 0; changes < 1000; i++) {
                    assertTrue(System.nanoTime() < deadline, "the routes saw the slot change only " + changes
                            + " times in 30 s");
                    PciRoute r = t.route(hca, addr);
                    if (r instanceof Peer p) {
                        assertEquals(0x1234, p.offset(), "route " + i + ": " + p);
                    } else {
                        assertInstanceOf(Unsupported.class, r, "route " + i);
                    }
                    boolean peer = r instanceof Peer;
                    changes += peer != wasPeer ? 1 : 0;
                    wasPeer = peer;
                }
            } finally {
                stop.set(true);
                slot.join(10_000);
            }
            assertFalse(slot.isAlive(), "the slot thread stopped");
        }
    }

    @Test
    void routingAFunctionOfAnotherTopologyFails() {
        try (PciTopology a = TopologyLoader.defaultMachine(); PciTopology b = TopologyLoader.defaultMachine()) {
            assertThrows(ErrnoException.class, () -> a.route(b.function("04:00.0"), 0));
        }
    }
}
