package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.machine.Machine;
import org.osgi.annotation.bundle.Capability;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceRegistration;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;

/**
 * Offers the runtime machine's {@link AccelCore} as an OSGi service, for accelerator drivers to register with and
 * applications to open. Deactivation withdraws the service, then unregisters every device (each context is
 * disassociated). The service is registered by hand (its type is a final API class), so the capability is
 * declared for resolvers.
 */
@Capability(namespace = "osgi.service", attribute = "objectClass:List<String>=dev.dmaplane.accel.AccelCore",
        uses = AccelCore.class)
@Component(immediate = true, service = {})
public final class AccelCoreComponent {
    private final AccelCore core;
    private final ServiceRegistration<AccelCore> registration;

    @Activate
    public AccelCoreComponent(BundleContext context, @Reference Machine machine) {
        this.core = AccelCore.of(machine);
        this.registration = context.registerService(AccelCore.class, core, null);
    }

    @Deactivate
    void deactivate() {
        try {
            registration.unregister();
        } catch (IllegalStateException alreadyGone) {
            // the bundle stopped first: the framework withdrew the service with it
        } finally {
            core.close();
        }
    }
}
