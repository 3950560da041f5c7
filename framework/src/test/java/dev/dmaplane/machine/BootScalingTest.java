package dev.dmaplane.machine;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRoute;
import dev.dmaplane.pci.TopologyLoader;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Boot work grows linearly with the number of root ports. Each DMA domain reserves the windows of its devices' host
 * bridge, as {@code iommu_dma_init_domain} does through {@code iova_reserve_pci_windows} in
 * {@code drivers/iommu/dma-iommu.c}, not every root port's window: counted, not timed.
 */
class BootScalingTest {
    /** One host bridge with {@code ports} root ports enforcing ACS, each over an endpoint with a 1 MiB BAR. */
    static String rootPorts(int ports) {
        StringBuilder sb = new StringBuilder("memory: 1GiB\npci:\n  hostBridges:\n    - children:\n");
        for (int p = 0; p < ports; p++) {
            sb.append(String.format("""
                            - { bdf: "00:%02x.%d", type: rootPort, vendor: "0x8086", device: "0x1000", class: "0x060400",
                                multifunction: true, acs: [SV, RR, CR, UF],
                                children: [ { bdf: "%02x:00.0", vendor: "0x1da0", device: "0x2", class: "0x020000",
                                              bars: [ { index: 0, size: 1MiB } ] } ] }
                    """, p / 8, p % 8, p + 1));
        }
        return sb.toString();
    }

    private static Machine boot(int ports) {
        return Machine.boot(TopologyLoader.load(rootPorts(ports), TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
    }

    @Test
    void pciWindowReservationsGrowLinearlyWithRootPorts() {
        long small;
        long large;
        try (Machine m = boot(16)) {
            assertEquals(32, m.iommu().groups().size(), "every port and every endpoint is a group of its own");
            small = m.pciWindowReservations();
        }
        try (Machine m = boot(32)) {
            large = m.pciWindowReservations();
            long dmaDomains = m.iommu().groups().stream().map(g -> g.defaultDomain())
                    .filter(d -> d.type() == IommuDomainType.DMA).distinct().count();
            int hostWindows = m.pci().hostBridges().getFirst().windows().size();
            assertEquals(dmaDomains * hostWindows, large, "each DMA domain reserves its host bridge's windows once");
        }
        assertTrue(small > 0);
        assertTrue(large <= 2 * small, "16 ports: " + small + " reservations, 32 ports: " + large);
    }

    @Test
    void iovasStillAvoidEveryBarBelowTheHostBridge() {
        try (Machine m = boot(4)) {
            PciFunction ep = m.pci().function("01:00.0");
            IommuDomain d = m.iommu().groupOf(ep).orElseThrow().defaultDomain();
            for (int i = 0; i < 4; i++) {
                long bar = m.pci().function(String.format("%02x:00.0", i + 1)).bar(0).orElseThrow().address();
                assertEquals(0, d.iovaAllocator().reserve(bar, bar + (1 << 20)), "BAR of port " + i + " already reserved");
            }
            long iova = ep.dma().mapSingle(0, 4096, DmaDirection.TO_DEVICE);
            assertInstanceOf(PciRoute.RootComplex.class, m.pci().route(ep, iova));
            ep.dma().unmapSingle(iova, 4096, DmaDirection.TO_DEVICE);
        }
    }
}
