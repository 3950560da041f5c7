package dev.dmaplane.rdma.impl;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;
import org.osgi.annotation.bundle.Capability;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceRegistration;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Offers one {@link RdmaCore} for the runtime's {@link Machine} as an OSGi service, for HCA driver bundles to
 * register devices with and applications to open them. Deactivation withdraws the service, then unregisters
 * every device (each context is disassociated). The service is registered by hand (its type is a final API class),
 * so the capability is declared for resolvers.
 */
@Capability(namespace = "osgi.service", attribute = "objectClass:List<String>=dev.dmaplane.rdma.RdmaCore",
        uses = RdmaCore.class)
@Component(immediate = true, service = {})
public final class RdmaCoreComponent {
    private static final Logger LOG = LoggerFactory.getLogger(RdmaCoreComponent.class);

    private final RdmaCore core;
    private final ServiceRegistration<RdmaCore> registration;

    @Activate
    public RdmaCoreComponent(BundleContext context, @Reference Machine machine) {
        this.core = new RdmaCore(machine.tracer());
        this.registration = context.registerService(RdmaCore.class, core, null);
    }

    @Deactivate
    void deactivate() {
        try {
            registration.unregister();
        } catch (IllegalStateException alreadyGone) {
            // expected when the bundle stopped first: the framework withdrew the service with it, hence debug
            LOG.debug("RdmaCore service already unregistered at deactivate", alreadyGone);
        } finally {
            core.close();
        }
    }
}
