package dev.dmaplane.device;

import org.osgi.annotation.versioning.ConsumerType;

/** A driver's state for one device it bound ({@code dev_get_drvdata}), ended by {@link #remove()}. */
@ConsumerType
@FunctionalInterface
public interface BoundDevice {
    /** The driver's {@code remove}: stop the device and release what probe took. Must not throw. */
    void remove();

    /**
     * {@code pci_error_handlers.error_detected}: an uncorrectable error of the device was reported; the I/O channel is
     * in {@code state}. The driver says whether it can recover. {@link ErsResult#NONE} by default, a driver without
     * error handlers.
     */
    default ErsResult errorDetected(ChannelState state) {
        return ErsResult.NONE;
    }

    /** {@code pci_error_handlers.resume}: recovery is over, the driver may start I/O again. Nothing by default. */
    default void resume() {
    }

    /** The state of a device's I/O channel after an error ({@code pci_channel_state_t}). */
    enum ChannelState {
        /** {@code pci_channel_io_normal}: I/O still works (a non-fatal error). */
        NORMAL,
        /** {@code pci_channel_io_frozen}: I/O is blocked until a reset (a fatal error). */
        FROZEN,
        /** {@code pci_channel_io_perm_failure}: the device is gone for good. */
        PERM_FAILURE
    }

    /** A driver's answer to an error callback ({@code pci_ers_result_t}). */
    enum ErsResult {
        /** {@code PCI_ERS_RESULT_NONE}: no opinion, or no error handlers. */
        NONE,
        /** {@code PCI_ERS_RESULT_CAN_RECOVER}: the driver can recover without a reset. */
        CAN_RECOVER,
        /** {@code PCI_ERS_RESULT_NEED_RESET}: the driver needs a slot reset. */
        NEED_RESET,
        /** {@code PCI_ERS_RESULT_DISCONNECT}: the device cannot recover. */
        DISCONNECT,
        /** {@code PCI_ERS_RESULT_RECOVERED}: the device recovered. */
        RECOVERED
    }
}
