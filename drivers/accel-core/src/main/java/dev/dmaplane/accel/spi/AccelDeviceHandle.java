package dev.dmaplane.accel.spi;

import org.osgi.annotation.versioning.ProviderType;

/** A driver's hold on a registered device ({@code drm_dev_register} / {@code drm_dev_unplug}). */
@ProviderType
public interface AccelDeviceHandle {
    /** The device name the core gave ({@code accel0}, ...). */
    String name();

    /**
     * Unregisters the device ({@code drm_dev_unplug}): every context is disassociated, every buffer object freed
     * once its fences signal (bounded), every VM destroyed; later calls on the device's contexts fail with
     * {@code EIO}. Idempotent.
     */
    void unregister();
}
