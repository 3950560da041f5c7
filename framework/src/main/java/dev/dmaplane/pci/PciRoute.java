package dev.dmaplane.pci;

import org.osgi.annotation.versioning.ProviderType;

import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * Where the PCI Express fabric below the root complex takes a memory request a function issues (PCIe Base Spec:
 * address routing through the memory windows of switch ports, ACS P2P Request Redirect and Upstream Forwarding).
 * Computed by {@link PciTopology#route(PciFunction, long)}.
 */
@ProviderType
public sealed interface PciRoute {

    /**
     * The request never reaches the root complex: a bridge whose window claims the address routed it down to
     * {@code bar} of {@code target} (or the requester decoded its own BAR). No IOMMU translates it.
     *
     * @param target  the function whose BAR decodes the address
     * @param bar     that BAR
     * @param offset  the offset of the address in the BAR
     * @param bridges the bridges the request passed, in order: up from the requester, then down to the target;
     *                empty when the requester targets its own BAR
     */
    record Peer(PciFunction target, Bar bar, long offset, List<PciFunction> bridges) implements PciRoute {
        public Peer {
            Objects.requireNonNull(target, "target");
            Objects.requireNonNull(bar, "bar");
            bridges = List.copyOf(bridges);
        }

        @Override
        public String toString() {
            return "Peer[" + target.bdf() + " BAR" + bar.index() + String.format(" +%#x", offset) + " via "
                    + bridges.stream().map(f -> f.bdf().toString()).toList() + "]";
        }
    }

    /**
     * The request travels up to the root complex, where the IOMMU translates it and the host bridge routes the
     * result, as for any DMA to RAM.
     *
     * @param entry        the root port (or root-bus function) through which it enters the root complex
     * @param redirectedBy the function whose ACS P2P Request Redirect sent it upstream although a peer below the
     *                     root port decodes the address; empty when no peer on the way claimed it
     */
    record RootComplex(PciFunction entry, Optional<PciFunction> redirectedBy) implements PciRoute {
        public RootComplex {
            Objects.requireNonNull(entry, "entry");
            Objects.requireNonNull(redirectedBy, "redirectedBy");
        }

        /** Why the request reached the root complex, in words. */
        public String reason() {
            return redirectedBy.map(r -> "ACS P2P Request Redirect at " + r.bdf() + " sends it upstream; it enters the root complex at "
                    + entry.bdf()).orElse("no bridge below the root complex claims it; it enters the root complex at " + entry.bdf());
        }
    }

    /**
     * A bridge took the request where no function decodes it, or could not forward it, or it reached a function that
     * does not decode memory: the fabric completes it as an Unsupported Request and no byte moves.
     *
     * @param at     the function that completes it as an Unsupported Request: the bridge that stopped the request,
     *               or the function whose BAR holds the address while its Memory Space Enable is clear
     * @param reason why, naming the bridge and the address
     */
    record Unsupported(PciFunction at, String reason) implements PciRoute {
        public Unsupported {
            Objects.requireNonNull(at, "at");
            Objects.requireNonNull(reason, "reason");
        }
    }
}
