package dev.dmaplane.device;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * A device driver ({@code struct device_driver} with its {@code probe}/{@code remove}). Driver bundles register
 * it as an OSGi service; on a plain classpath it is handed to {@link DeviceCore#registerDriver}.
 */
@ConsumerType
public interface Driver {
    /** The driver's name as {@code /sys/bus/.../drivers/NAME} shows it. */
    String name();

    /** The devices this driver claims. */
    MatchTable matchTable();

    /**
     * Binds to {@code device}. Resources taken here that must outlive a failure should be registered with
     * {@link Device#devres()}, which releases them after {@link BoundDevice#remove()} or a failed probe.
     *
     * @param device the device to drive, not bound to any other driver
     * @param match  the row of {@link #matchTable()} that matched
     * @return the binding; its {@code remove} is called when the driver or the device goes away
     * @throws Exception any failure: the device stays unbound, and no other device is affected
     */
    BoundDevice probe(Device device, MatchEntry match) throws Exception;
}
