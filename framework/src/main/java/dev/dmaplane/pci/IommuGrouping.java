package dev.dmaplane.pci;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Computes IOMMU isolation groups the way {@code pci_device_group} in {@code drivers/iommu/iommu.c} does,
 * probing functions in the order the kernel adds them so bridges are grouped before the devices below them:
 * <ol>
 *   <li>walk up from the function; at each bus, if the bridge above ({@code bus->self}) and every bridge up to
 *       the root bus enforce {@link Acs#REQUIRED} ({@code pci_acs_path_enabled}), stop; otherwise the bridge
 *       becomes the function's stand-in and, if it already has a group, the function joins it;</li>
 *   <li>a multi-function stand-in without ACS joins a group of another function in the same slot that also
 *       lacks ACS ({@code get_pci_function_alias_group});</li>
 *   <li>a switch downstream-port stand-in without ACS joins a group of another downstream port on the same
 *       switch bus that also lacks ACS: with P2P Request Redirect off the switch routes a request from below one
 *       port straight to a peer port, so neither subtree is isolated from the other (the function-slot rule
 *       above, applied to a switch's internal bus);</li>
 *   <li>otherwise a new group starts.</li>
 * </ol>
 * There are no DMA alias quirks or conventional PCI bridges in this model, so a function's DMA alias is itself.
 */
final class IommuGrouping {
    private IommuGrouping() {
    }

    static List<List<PciFunction>> compute(List<PciFunction> probeOrder) {
        Map<PciFunction, List<PciFunction>> groupOf = new IdentityHashMap<>();
        List<List<PciFunction>> groups = new ArrayList<>();
        for (PciFunction fn : probeOrder) {
            List<PciFunction> g = deviceGroup(fn, groupOf);
            if (g == null) {
                g = new ArrayList<>();
                groups.add(g);
            }
            g.add(fn);
            groupOf.put(fn, g);
        }
        return groups.stream().map(List::copyOf).toList();
    }

    private static List<PciFunction> deviceGroup(PciFunction fn, Map<PciFunction, List<PciFunction>> groupOf) {
        PciFunction pdev = fn;
        for (PciBus bus = fn.pciBus(); !bus.isRoot(); bus = bus.parent().orElseThrow()) {
            Optional<PciFunction> self = bus.self();
            if (self.isEmpty()) {
                continue;
            }
            if (acsPathEnabled(self.get(), null, Acs.REQUIRED)) {
                break;
            }
            pdev = self.get();
            List<PciFunction> g = groupOf.get(pdev);
            if (g != null) {
                return g;
            }
        }
        if (!pdev.acsEnabled(Acs.REQUIRED)) {
            for (PciFunction peer : pdev.pciBus().devices()) {
                if (peer != pdev && isUnisolatedPeer(pdev, peer) && groupOf.containsKey(peer)) {
                    return groupOf.get(peer);
                }
            }
        }
        return null;
    }

    private static boolean isUnisolatedPeer(PciFunction pdev, PciFunction peer) {
        if (peer.acsEnabled(Acs.REQUIRED)) {
            return false;
        }
        boolean sameSlot = pdev.isMultifunction() && peer.bdf().device() == pdev.bdf().device();
        boolean switchPeers = isDownstreamPort(pdev) && isDownstreamPort(peer);
        return sameSlot || switchPeers;
    }

    private static boolean isDownstreamPort(PciFunction f) {
        return f.portType().orElse(null) == PciPortType.DOWNSTREAM;
    }

    /**
     * {@code pci_acs_path_enabled}: every function from {@code start} up through {@code end} (or up to the root
     * bus when {@code end} is null) enforces {@code flags}.
     */
    static boolean acsPathEnabled(PciFunction start, PciFunction end, Acs flags) {
        PciFunction pdev = start;
        while (true) {
            if (!pdev.acsEnabled(flags)) {
                return false;
            }
            if (pdev == end) {
                return true;
            }
            if (pdev.pciBus().isRoot()) {
                return end == null;
            }
            pdev = pdev.pciBus().self().orElseThrow();
        }
    }
}
