package dev.dmaplane.pci;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Address routing of a memory request below the root complex (PCIe Base Spec: a bridge forwards downstream what its
 * memory windows claim and upstream what they do not; ACS P2P Request Redirect and Upstream Forwarding, the
 * {@code PCI_ACS_RR} and {@code PCI_ACS_UF} control bits of {@code include/uapi/linux/pci_regs.h}).
 * <p>
 * The request climbs from the requester one bus at a time. On each bus, a peer whose BAR decodes the address, or a
 * bridge whose window claims it, takes it — unless the port that put it on that bus has P2P Request Redirect
 * enabled, which sends it upstream instead. A bridge never forwards back down a request that arrived from below
 * inside its own windows; only a request already redirected by ACS passes such a port, and then only if the port
 * has Upstream Forwarding enabled (a switch upstream port carries redirected requests up unconditionally). Once on
 * the root bus the request belongs to the root complex and its IOMMU.
 * <p>
 * A function decodes its BARs only while its Memory Space Enable bit is set, and a bridge forwards down to its
 * windows only while its own is; a bridge forwards requests from below up only while its Bus Master Enable bit is
 * set (PCI-to-PCI Bridge Architecture: the command register of a bridge controls its primary side and forwarding).
 * A request nothing decodes on the way is an Unsupported Request.
 * <p>
 * Not modelled: ACS P2P Egress Control (there is no Egress Control Vector, so it never blocks) and Completion
 * Redirect (it reroutes completions, not where the data goes).
 */
final class PciRouting {
    private PciRouting() {
    }

    static PciRoute route(PciFunction requester, long addr) {
        Optional<Decoded> own = barAt(requester, addr);
        if (own.isPresent()) {
            return new PciRoute.Peer(requester, own.get().bar(), own.get().offset(), List.of());
        }
        List<PciFunction> climbed = new ArrayList<>(4);
        PciFunction redirectedBy = null;
        PciFunction cur = requester;
        while (true) {
            PciBus bus = cur.pciBus();
            if (bus.isRoot()) {
                return new PciRoute.RootComplex(cur, Optional.ofNullable(redirectedBy));
            }
            if (redirectedBy == null) {
                PciFunction claimant = claimant(bus, cur, addr);
                if (claimant != null) {
                    if (!requestRedirect(cur)) {
                        return descend(claimant, addr, climbed);
                    }
                    redirectedBy = cur;
                }
            }
            PciFunction up = bus.self().orElseThrow();
            if (!up.busMasterEnabled()) {
                return new PciRoute.Unsupported(up, String.format("%s does not forward the request for %#x upstream:"
                        + " its Bus Master Enable is clear", up.bdf(), addr));
            }
            if (windowClaims(up, addr)) {
                if (redirectedBy == null) {
                    return new PciRoute.Unsupported(up, String.format(
                            "%s decodes %#x as below it, where the request came from, but no function there claims it", up.bdf(), addr));
                }
                if (up.portType().orElse(null) != PciPortType.UPSTREAM && !upstreamForwarding(up)) {
                    return new PciRoute.Unsupported(up, String.format("request for %#x redirected by ACS at %s meets %s, which decodes it"
                            + " as its own secondary side and has no ACS Upstream Forwarding", addr, redirectedBy.bdf(), up.bdf()));
                }
            }
            climbed.add(up);
            cur = up;
        }
    }

    /** Down from {@code first}, which claims {@code addr}, to the function whose BAR decodes it. */
    private static PciRoute descend(PciFunction first, long addr, List<PciFunction> climbed) {
        List<PciFunction> path = new ArrayList<>(climbed);
        PciFunction node = first;
        while (true) {
            Optional<Decoded> bar = barAt(node, addr);
            if (bar.isPresent()) {
                return new PciRoute.Peer(node, bar.get().bar(), bar.get().offset(), path);
            }
            path.add(node);
            Optional<PciBus> below = node.subordinate();
            PciFunction next = below.isEmpty() ? null : claimant(below.get(), null, addr);
            if (next == null) {
                Optional<PciFunction> off = below.flatMap(b -> notDecoding(b, addr));
                if (off.isPresent()) {
                    return new PciRoute.Unsupported(off.get(), String.format("%#x is in a BAR of %s, whose Memory Space"
                            + " Enable is clear: it handles the request as Unsupported", addr, off.get().bdf()));
                }
                return new PciRoute.Unsupported(node, String.format(
                        "a window of %s claims %#x but no function below it decodes the address", node.bdf(), addr));
            }
            node = next;
        }
    }

    /** The function on {@code bus}, other than {@code except}, whose BAR or bridge window claims {@code addr}. */
    private static PciFunction claimant(PciBus bus, PciFunction except, long addr) {
        for (PciFunction f : bus.devices()) {
            if (f != except && (barAt(f, addr).isPresent() || f.isBridge() && windowClaims(f, addr))) {
                return f;
            }
        }
        return null;
    }

    /**
     * The function on {@code bus} with an assigned BAR that holds {@code addr} but does not decode it, its Memory
     * Space Enable being clear (PCIe Base Spec 7.5.1.1.3: it receives the request and handles it as Unsupported).
     */
    private static Optional<PciFunction> notDecoding(PciBus bus, long addr) {
        for (PciFunction f : bus.devices()) {
            if (!f.configSpace().present() || f.configSpace().memorySpaceEnabled()) {
                continue;
            }
            for (Bar b : f.bars()) {
                long base = b.address();
                if (base != 0 && Long.compareUnsigned(addr - base, b.size()) < 0) {
                    return Optional.of(f);
                }
            }
        }
        return Optional.empty();
    }

    /** A BAR that decodes an address, and the address's offset in it. */
    private record Decoded(Bar bar, long offset) {
    }

    /**
     * The assigned BAR of {@code fn} that decodes {@code addr}, with the offset from the one base address read that
     * matched: the hardware may leave the slot meanwhile (its registers read all ones), so the base is never read
     * twice. None while its Memory Space Enable is clear.
     */
    private static Optional<Decoded> barAt(PciFunction fn, long addr) {
        if (!fn.configSpace().memorySpaceEnabled()) {
            return Optional.empty();
        }
        for (Bar b : fn.bars()) {
            long base = b.address();
            if (base != 0 && Long.compareUnsigned(addr - base, b.size()) < 0) {
                return Optional.of(new Decoded(b, addr - base));
            }
        }
        return Optional.empty();
    }

    /**
     * Whether a bridge's memory or prefetchable memory window holds {@code addr} and the bridge forwards it (its
     * Memory Space Enable is set).
     */
    static boolean windowClaims(PciFunction bridge, long addr) {
        ConfigSpace cs = bridge.configSpace();
        return cs.memorySpaceEnabled() && (contains(cs.memoryWindow(), addr) || contains(cs.prefetchableWindow(), addr));
    }

    private static boolean contains(Optional<ConfigSpace.Window> w, long addr) {
        return w.isPresent() && Long.compareUnsigned(addr, w.get().base()) >= 0
                && Long.compareUnsigned(addr, w.get().limit()) <= 0;
    }

    private static boolean requestRedirect(PciFunction fn) {
        return fn.acs().map(Acs::rr).orElse(false);
    }

    private static boolean upstreamForwarding(PciFunction fn) {
        return fn.acs().map(Acs::uf).orElse(false);
    }
}
