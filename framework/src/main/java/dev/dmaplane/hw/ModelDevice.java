package dev.dmaplane.hw;

import dev.dmaplane.pci.PciReset;
import org.osgi.annotation.versioning.ConsumerType;

/**
 * The state of one emulated device, made by {@link DeviceModel#realize} (QEMU's {@code DeviceState} with its
 * {@code reset} and {@code unrealize}). The machine calls these methods one at a time per device.
 */
@ConsumerType
public interface ModelDevice {
    /**
     * Returns the device's registers and engines to their power-on state, for a Function Level Reset or a
     * secondary bus reset above it. When this returns, no DMA or interrupt started before it is still to come.
     */
    void reset(PciReset kind);

    /**
     * Stops the device: when this returns it issues no new DMA and raises no interrupt. Called before the hardware
     * leaves and before the machine shuts down; the default suits a device that only works inside MMIO writes.
     */
    default void quiesce() {
    }

    /**
     * The hardware has left: releases what {@link DeviceModel#realize} took beyond what its context registered
     * (threads, buffers). The registers were already detached.
     */
    default void remove() {
    }
}
