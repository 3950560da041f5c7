package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.Driver;
import dev.dmaplane.machine.Machine;
import org.osgi.framework.Bundle;
import org.osgi.framework.ServiceReference;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.List;

/**
 * The bridge between the OSGi service registry and the driver core ({@code driver_register} on module load):
 * every {@link Driver} service is registered with the machine's {@link dev.dmaplane.device.DeviceCore} when it
 * appears and unregistered when it goes, so stopping or uninstalling a driver bundle runs the driver's
 * {@code remove} on each device it drives. Calls arrive on whichever thread changed the service; the driver core
 * serialises them.
 */
@Component(immediate = true, service = DriverBinder.class)
public final class DriverBinder {
    private static final Logger LOG = LoggerFactory.getLogger(DriverBinder.class);

    /** A driver the core accepted, with the bundle that offered it. */
    public record Registered(Driver driver, String bundle) {
    }

    private final Machine machine;
    /**
     * Drivers the core accepted, in registration order; a driver it refused (e.g. a duplicate name) is not here
     * and is not unregistered.
     */
    private final List<Registered> registered = new ArrayList<>();
    private boolean active = true;

    @Activate
    public DriverBinder(@Reference Machine machine) {
        this.machine = machine;
    }

    @Reference(cardinality = ReferenceCardinality.MULTIPLE, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY)
    void bindDriver(Driver driver, ServiceReference<Driver> ref) {
        Registered r = new Registered(driver, bundleName(ref));
        synchronized (this) {
            if (!active) {
                return;
            }
            registered.add(r); // before the core sees it, so whoever sees it bound also sees its bundle
        }
        // The core is called without holding this monitor: a probe may register services whose listeners come
        // back here on the same thread, or take the core's lock while another thread holds ours. Logged before
        // the call, so the line comes before the probe's own and before anyone can see the device bound.
        LOG.info("driver '{}' from {}: registering", safeName(driver), r.bundle());
        try {
            machine.devices().registerDriver(driver);
        } catch (RuntimeException e) {
            synchronized (this) {
                registered.remove(r);
            }
            LOG.error("driver '{}' from {} refused by the driver core: {}", safeName(driver), r.bundle(), e.getMessage());
            return;
        }
        boolean orphaned;
        synchronized (this) {
            orphaned = !active; // deactivated while the core probed
        }
        if (orphaned && machine.devices().drivers().contains(driver)) {
            unregister(r);
        }
    }

    void unbindDriver(Driver driver) {
        Registered r = null;
        synchronized (this) {
            for (int i = 0; i < registered.size(); i++) {
                if (registered.get(i).driver() == driver) {
                    r = registered.remove(i);
                    break;
                }
            }
        }
        if (r != null) {
            unregister(r);
        }
    }

    @Deactivate
    void deactivate() {
        List<Registered> all;
        synchronized (this) {
            active = false;
            all = new ArrayList<>(registered);
            registered.clear();
        }
        for (int i = all.size() - 1; i >= 0; i--) {
            unregister(all.get(i));
        }
    }

    /** The drivers registered through this binder, in registration order. */
    public synchronized List<Registered> registered() {
        return List.copyOf(registered);
    }

    private void unregister(Registered r) {
        LOG.info("driver '{}' from {}: unregistering", safeName(r.driver()), r.bundle());
        try {
            machine.devices().unregisterDriver(r.driver());
        } catch (RuntimeException e) {
            LOG.error("unregistering driver '{}' from {} failed", safeName(r.driver()), r.bundle(), e);
        }
    }

    private static String bundleName(ServiceReference<?> ref) {
        Bundle b = ref == null ? null : ref.getBundle();
        return b == null ? "?" : b.getSymbolicName() + " " + b.getVersion();
    }

    private static String safeName(Driver d) {
        try {
            return d.name();
        } catch (RuntimeException e) {
            return d.getClass().getName();
        }
    }
}
