package dev.dmaplane.p2pdma;

import dev.dmaplane.device.Device;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciFunction;

import java.util.List;
import java.util.Objects;

/**
 * One provider–client pair as {@code calc_map_type_and_dist} in {@code drivers/pci/p2pdma.c} judges it.
 *
 * @param provider     the function whose memory is used
 * @param client       the device that would DMA to it, as given
 * @param mapType      how the client must address the memory
 * @param distance     hops through bridges between them, or -1 when not supported
 * @param acsRedirects the functions on the path whose ACS Control redirects peer traffic (RR, CR or EC set)
 * @param reason       the decision in words, like the kernel's warnings
 */
public record P2pPath(PciFunction provider, Device client, MapType mapType, int distance, List<PciFunction> acsRedirects,
                      String reason) {
    public P2pPath {
        Objects.requireNonNull(provider, "provider");
        Objects.requireNonNull(client, "client");
        Objects.requireNonNull(mapType, "mapType");
        Objects.requireNonNull(reason, "reason");
        acsRedirects = List.copyOf(acsRedirects);
        if ((mapType == MapType.NOT_SUPPORTED) != (distance < 0)) {
            throw new ErrnoException(Errno.EINVAL, "distance " + distance + " does not fit map type " + mapType);
        }
    }
}
