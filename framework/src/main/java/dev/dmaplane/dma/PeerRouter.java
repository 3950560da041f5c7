package dev.dmaplane.dma;

import dev.dmaplane.device.Device;
import dev.dmaplane.mem.PhysicalRegion;
import org.osgi.annotation.versioning.ConsumerType;
import org.osgi.annotation.versioning.ProviderType;

import java.util.Objects;

/**
 * The fabric between a device and the root complex as the DMA layer sees it: whether a switch on the way up
 * delivers a device's memory request straight to a peer's device memory (PCIe address routing below the root
 * port), so that the IOMMU never sees it. The machine installs one; without it every request goes upstream.
 */
@ConsumerType
@FunctionalInterface
public interface PeerRouter {
    /** Every request goes to the root complex: no fabric below it routes peer-to-peer. */
    PeerRouter NONE = (requester, busAddr) -> Upstream.INSTANCE;

    /** The route of a memory request {@code requester} issues at {@code busAddr}; called on the data path. */
    Route route(Device requester, long busAddr);

    /**
     * A value that changes whenever a route may have changed (a config write to a BAR or a bridge window): an
     * {@link Upstream} route remembered under an older value must be asked again. Constant by default.
     */
    default long epoch() {
        return 0;
    }

    /**
     * The fabric completed {@code requester}'s memory request of {@code size} bytes at {@code busAddr} as an
     * Unsupported Request: {@link #route} refused it, or the root complex sent it where nothing decodes it. The
     * fabric logs it as PCIe does (Base Spec 6.2.5: the completer's error registers and, for a non-posted request,
     * the requester's Received Master Abort). Nothing by default.
     *
     * @param size   bytes of the one request, at most 4096, not crossing a 4 KiB boundary
     * @param posted whether the request is a memory write; a read or an AtomicOp is non-posted
     * @param at     the device region the root complex sent the request to, which does not decode it now
     *               ({@link PhysicalRegion#decodes()}); null when the fabric refused it or no region holds the address
     */
    default void unsupportedRequest(Device requester, long busAddr, int size, boolean posted, PhysicalRegion at) {
    }

    /** What the fabric does with one request. */
    @ProviderType
    sealed interface Route permits Upstream, ToPeer, Refused {
    }

    /** The request reaches the root complex, where the device's IOMMU domain translates it. */
    enum Upstream implements Route {
        INSTANCE
    }

    /** A switch delivers the request to {@code region} at {@code offset}; no translation happens. */
    record ToPeer(PhysicalRegion region, long offset) implements Route {
        public ToPeer {
            Objects.requireNonNull(region, "region");
        }
    }

    /** The fabric completes the request as an Unsupported Request; {@code reason} says where and why. */
    record Refused(String reason) implements Route {
        public Refused {
            Objects.requireNonNull(reason, "reason");
        }
    }
}
