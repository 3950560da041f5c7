package dev.dmaplane.device;

/** A driver's state for one device it bound ({@code dev_get_drvdata}), ended by {@link #remove()}. */
@FunctionalInterface
public interface BoundDevice {
    /** The driver's {@code remove}: stop the device and release what probe took. Must not throw. */
    void remove();
}
