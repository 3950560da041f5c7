package dev.dmaplane.dma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * Device memory traffic the bus carried, by where each access landed, as an IIO uncore PMU counts inbound requests
 * per root port ({@code arch/x86/events/intel/uncore_snbep.c}): bytes devices read from and wrote to host RAM,
 * bytes they read from and wrote to a peer's BAR (routed by a switch below the root complex, or through the host
 * bridge into a {@link DmaApi#mapResource} window), and PCIe AtomicOps (counted as operations, not as bytes).
 * Refused requests are not counted. A device writing its own memory without the bus is not traffic.
 *
 * @param ramReadBytes   bytes read from host RAM
 * @param ramWriteBytes  bytes written to host RAM
 * @param peerReadBytes  bytes read from a peer's memory BAR
 * @param peerWriteBytes bytes written to a peer's memory BAR
 * @param atomics        AtomicOps completed (CAS, FetchAdd), wherever they landed
 */
public record DmaTraffic(long ramReadBytes, long ramWriteBytes, long peerReadBytes, long peerWriteBytes, long atomics) {
    /** No traffic. */
    public static final DmaTraffic ZERO = new DmaTraffic(0, 0, 0, 0, 0);

    /**
     * @throws ErrnoException {@code EINVAL} for a negative count
     */
    public DmaTraffic {
        if ((ramReadBytes | ramWriteBytes | peerReadBytes | peerWriteBytes | atomics) < 0) {
            throw new ErrnoException(Errno.EINVAL, "negative DMA traffic count: ramRead " + ramReadBytes + ", ramWrite "
                    + ramWriteBytes + ", peerRead " + peerReadBytes + ", peerWrite " + peerWriteBytes + ", atomics " + atomics);
        }
    }

    /**
     * The traffic since {@code earlier}, an older reading of the same counters.
     *
     * @throws ErrnoException {@code EINVAL} when {@code earlier} is null or counts more than this reading in any field
     *                        (not an older reading of the same counters)
     */
    public DmaTraffic minus(DmaTraffic earlier) {
        ErrnoException.requireNonNull(earlier, "earlier DMA traffic");
        if (ramReadBytes < earlier.ramReadBytes || ramWriteBytes < earlier.ramWriteBytes
                || peerReadBytes < earlier.peerReadBytes || peerWriteBytes < earlier.peerWriteBytes
                || atomics < earlier.atomics) {
            throw new ErrnoException(Errno.EINVAL, "DMA traffic " + earlier + " is not an earlier reading of " + this);
        }
        return new DmaTraffic(ramReadBytes - earlier.ramReadBytes, ramWriteBytes - earlier.ramWriteBytes,
                peerReadBytes - earlier.peerReadBytes, peerWriteBytes - earlier.peerWriteBytes, atomics - earlier.atomics);
    }
}
