package dev.dmaplane.hw;

import dev.dmaplane.errno.Errno;

/**
 * How one of a model's DMA operations ended: every byte moved, or stopped at a fault, as a device reports it in a
 * completion status instead of an exception (an NVMe status code, a copy engine's halt with its fault address).
 */
public sealed interface DmaStatus {
    /** Whether every byte moved. */
    default boolean ok() {
        return this instanceof Done;
    }

    /** All {@code bytes} moved. */
    record Done(long bytes) implements DmaStatus {
    }

    /**
     * The operation stopped at {@code busAddr}: bytes before it in the operation's order may have moved, bytes at
     * and after it did not, and nothing outside what the IOMMU maps was touched.
     *
     * @param busAddr first address not transferred
     * @param moved   bytes moved before the fault
     * @param errno   the refusal's errno as the function's {@link dev.dmaplane.dma.BusMaster} reported it, or
     *                {@code EPERM} for an access to the function's own register BARs
     * @param reason  what refused it, for the model's log and the test's assertion
     */
    record Fault(long busAddr, long moved, Errno errno, String reason) implements DmaStatus {
    }
}
