package dev.dmaplane.accel;

import dev.dmaplane.accel.spi.EngineInfo;
import dev.dmaplane.accel.spi.VramInfo;
import org.osgi.annotation.versioning.ProviderType;

import java.util.List;

/** A registered accelerator ({@code struct drm_device} behind {@code /dev/accel/accelN}). */
@ProviderType
public interface AccelDevice {
    /** {@code accel0}, ... */
    String name();

    /** {@code drm_driver.name}. */
    String driverName();

    VramInfo vram();

    List<EngineInfo> engines();

    /** Bytes of VRAM not handed out. */
    long vramAvailable();

    /**
     * Opens a context ({@code open("/dev/accel/accelN")}: a {@code drm_file} with its GEM handle table and GPU VM).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENODEV} once the device is unregistered
     */
    AccelContext open();

    /** The contexts open on the device, oldest first. */
    List<AccelContext> contexts();

    /** Sets the per-context limits; each context keeps those in force when it was opened. */
    void setLimits(AccelLimits limits);

    AccelLimits limits();
}
