package dev.dmaplane.pci;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * The registers behind an MMIO BAR: what a device model does when the CPU loads or stores through the BAR
 * ({@code readl}/{@code writel} on an {@code ioremap}ped BAR). Offsets are relative to the BAR and already
 * checked: {@code offset + size} lies inside the BAR and {@code offset} is a multiple of {@code size}.
 */
@ConsumerType
public interface MmioHandler {
    /** Returns the {@code size}-byte (1, 2, 4 or 8) register value at {@code offset}, zero-extended. */
    long read(long offset, int size);

    /** Stores the low {@code size} bytes of {@code value} at {@code offset}. */
    void write(long offset, int size, long value);

    /**
     * Whether the device refuses this access as a violation of its programming model (a hole, a wrong width): the
     * function then logs a Completer Abort (PCIe Base Spec 2.3.1, 6.2.3.2.3) and the access still goes to
     * {@link #read}/{@link #write} for the data it answers. No register is refused unless the handler says so.
     */
    default boolean refuses(long offset, int size) {
        return false;
    }
}
