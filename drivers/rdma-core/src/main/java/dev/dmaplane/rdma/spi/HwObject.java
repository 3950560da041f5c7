package dev.dmaplane.rdma.spi;

import org.osgi.annotation.versioning.ProviderType;

/**
 * What every object looks like to the provider: the core's object, plus one slot for the provider's own state
 * (the driver-private part of an {@code ib_qp}, {@code ib_cq}, ... that {@code container_of} reaches in a kernel
 * driver).
 */
@ProviderType
public interface HwObject {
    /** The provider's state for this object, or null. */
    Object driverData();

    /** Sets the provider's state; call it from the create hook. */
    void setDriverData(Object data);

    /** The provider's state as {@code type}. */
    default <T> T driverData(Class<T> type) {
        return type.cast(driverData());
    }
}
