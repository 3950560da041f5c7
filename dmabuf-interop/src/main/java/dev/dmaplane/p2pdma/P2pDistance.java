package dev.dmaplane.p2pdma;

import dev.dmaplane.pci.PciFunction;

import java.util.List;
import java.util.Objects;
import java.util.stream.Collectors;

/**
 * A provider against a set of clients ({@code pci_p2pdma_distance_many}): the summed distance, -1 when any client
 * cannot use the provider; the most restrictive map type among the clients; and why.
 *
 * @param provider the function whose memory is judged
 * @param distance the sum of the clients' distances (lower is better, 0 when the only client is the provider), or -1
 * @param mapType  {@link MapType#NOT_SUPPORTED} if any client is, else {@link MapType#THRU_HOST_BRIDGE} if any
 *                 client is, else {@link MapType#BUS_ADDR}
 * @param reason   each client's verdict, one per line
 * @param paths    each client's verdict, in the order given
 */
public record P2pDistance(PciFunction provider, int distance, MapType mapType, String reason, List<P2pPath> paths) {
    public P2pDistance {
        Objects.requireNonNull(provider, "provider");
        Objects.requireNonNull(mapType, "mapType");
        Objects.requireNonNull(reason, "reason");
        paths = List.copyOf(paths);
    }

    /** The verdict for {@code provider} over {@code paths}; no paths (no clients) is not supported. */
    public static P2pDistance of(PciFunction provider, List<P2pPath> paths) {
        if (paths.isEmpty()) {
            return new P2pDistance(provider, -1, MapType.NOT_SUPPORTED, "no clients to use " + provider.bdf() + " with", paths);
        }
        MapType type = MapType.BUS_ADDR;
        int sum = 0;
        for (P2pPath p : paths) {
            type = type.worse(p.mapType());
            sum += Math.max(p.distance(), 0);
        }
        String reason = paths.stream().map(P2pPath::reason).collect(Collectors.joining("\n"));
        return new P2pDistance(provider, type == MapType.NOT_SUPPORTED ? -1 : sum, type, reason, paths);
    }

    /** Whether every client can use the provider's memory. */
    public boolean supported() {
        return mapType != MapType.NOT_SUPPORTED;
    }
}
