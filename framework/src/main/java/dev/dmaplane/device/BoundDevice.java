package dev.dmaplane.device;

import org.osgi.annotation.versioning.ConsumerType;

/** A driver's state for one device it bound ({@code dev_get_drvdata}), ended by {@link #remove()}. */
@ConsumerType
@FunctionalInterface
public interface BoundDevice {
    /** The driver's {@code remove}: stop the device and release what probe took. Must not throw. */
    void remove();
}
