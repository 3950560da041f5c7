package dev.dmaplane.p2pdma.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.p2pdma.P2pPath;
import dev.dmaplane.pci.HostBridge;
import dev.dmaplane.pci.PciFunction;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * {@code calc_map_type_and_dist} of {@code drivers/pci/p2pdma.c}: walk up from the provider until a bridge is also
 * above the client. The distance is the number of steps on both sides (0 for the same function, 4 for two devices
 * under one switch). With a common upstream bridge and no ACS redirect ({@code pci_bridge_has_acs_redir}: RR, CR or
 * EC in the ACS Control register) on the provider's side up to and including that bridge, or on the client's side
 * below it, the pair uses bus addresses. Otherwise the traffic crosses the host bridge, which only its P2PDMA
 * whitelist answer ({@link HostBridge#p2pAllowed}) permits; without a common bridge the distance counts every step
 * to the root on both sides.
 */
final class PathJudge {
    private PathJudge() {
    }

    static P2pPath judge(PciFunction provider, Device client) {
        Optional<PciFunction> pci = pciAncestor(client);
        if (pci.isEmpty()) {
            return new P2pPath(provider, client, MapType.NOT_SUPPORTED, -1, List.of(),
                    client.name() + ": not a PCI device, so it cannot take part in peer-to-peer DMA with " + provider.bdf());
        }
        PciFunction b0 = pci.get();
        String who = b0 == client ? client.name() : client.name() + " (PCI function " + b0.bdf() + ")";
        List<PciFunction> a = chain(provider);
        List<PciFunction> b = chain(b0);
        int ia = -1;
        int ib = -1;
        for (int i = 0; i < a.size() && ia < 0; i++) {
            int j = indexOf(b, a.get(i));
            if (j >= 0) {
                ia = i;
                ib = j;
            }
        }
        if (ia < 0) {
            return throughHostBridge(provider, client, b0, a.size() + b.size(), List.of(),
                    who + " and provider " + provider.bdf() + " share no upstream bridge");
        }
        List<PciFunction> redirects = new ArrayList<>();
        for (int i = 0; i <= ia; i++) {
            if (acsRedirects(a.get(i))) {
                redirects.add(a.get(i));
            }
        }
        for (int j = 0; j < ib; j++) {
            if (acsRedirects(b.get(j))) {
                redirects.add(b.get(j));
            }
        }
        int dist = ia + ib;
        if (redirects.isEmpty()) {
            String r = provider == b0
                    ? who + " is the provider itself: it uses bus addresses of its own memory (distance 0)"
                    : who + " reaches provider " + provider.bdf() + " below common upstream bridge " + a.get(ia).bdf()
                    + " with no ACS redirect on the way: bus addresses, no IOMMU (distance " + dist + ")";
            return new P2pPath(provider, client, MapType.BUS_ADDR, dist, List.of(), r);
        }
        String ports = redirects.stream().map(f -> f.bdf().toString()).collect(Collectors.joining(";"));
        return throughHostBridge(provider, client, b0, dist, redirects, who + ": ACS redirect between it and provider "
                + provider.bdf() + " at " + ports + " sends peer traffic up to the root complex (the kernel parameter"
                + " pci=disable_acs_redir=" + ports + " would keep it in the switch)");
    }

    private static P2pPath throughHostBridge(PciFunction provider, Device client, PciFunction pciClient, int dist,
                                             List<PciFunction> redirects, String why) {
        HostBridge hp = provider.pciBus().hostBridge();
        HostBridge hc = pciClient.pciBus().hostBridge();
        boolean allowed = hp == hc ? hp.p2pAllowed() : hp.p2pAllowed() && hc.p2pAllowed();
        String hosts = hp == hc ? "host bridge " + hp : "host bridges " + hp + " and " + hc;
        if (allowed) {
            return new P2pPath(provider, client, MapType.THRU_HOST_BRIDGE, dist, redirects,
                    why + "; " + hosts + " allow" + (hp == hc ? "s" : "") + " peer-to-peer DMA, so the memory is mapped"
                            + " through the host bridge and the client's IOMMU (distance " + dist + ")");
        }
        return new P2pPath(provider, client, MapType.NOT_SUPPORTED, -1, redirects,
                why + "; " + hosts + (hp == hc ? " is" : " are") + " not on the P2PDMA whitelist, so it cannot be used"
                        + " for peer-to-peer DMA");
    }

    /** The device itself if it is a PCI function, else its nearest PCI ancestor ({@code find_parent_pci_dev}). */
    static Optional<PciFunction> pciAncestor(Device d) {
        for (Optional<Device> cur = Optional.of(d); cur.isPresent(); cur = cur.get().parent()) {
            if (cur.get() instanceof PciFunction f) {
                return Optional.of(f);
            }
        }
        return Optional.empty();
    }

    /** {@code fn}, then each {@code pci_upstream_bridge} above it. */
    private static List<PciFunction> chain(PciFunction fn) {
        List<PciFunction> out = new ArrayList<>();
        for (Optional<PciFunction> f = Optional.of(fn); f.isPresent(); f = f.get().upstreamBridge()) {
            out.add(f.get());
        }
        return out;
    }

    private static int indexOf(List<PciFunction> list, PciFunction fn) {
        for (int i = 0; i < list.size(); i++) {
            if (list.get(i) == fn) {
                return i;
            }
        }
        return -1;
    }

    /** {@code pci_bridge_has_acs_redir}: the ACS Control register has P2P Request or Completion Redirect or Egress Control set. */
    private static boolean acsRedirects(PciFunction fn) {
        return fn.acs().map(c -> c.rr() || c.cr() || c.ec()).orElse(false);
    }
}
