package dev.dmaplane.p2pdma.impl;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.P2pDma;
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
 * Offers the runtime {@link Machine}'s one {@link P2pDma} ({@code drivers/pci/p2pdma.c}) as an OSGi service, so
 * every driver bundle publishes and finds p2pmem in the same place. The core is the machine's own
 * ({@link P2pDma#of}), so deactivation only withdraws the service. Registered by hand (the instance is not this
 * component), so the capability is declared for resolvers.
 */
@Capability(namespace = "osgi.service", attribute = "objectClass:List<String>=dev.dmaplane.p2pdma.P2pDma",
        uses = P2pDma.class)
@Component(immediate = true, service = {})
public final class P2pDmaComponent {
    private static final Logger LOG = LoggerFactory.getLogger(P2pDmaComponent.class);

    private final ServiceRegistration<P2pDma> registration;

    @Activate
    public P2pDmaComponent(BundleContext context, @Reference Machine machine) {
        this.registration = context.registerService(P2pDma.class, P2pDma.of(machine), null);
    }

    @Deactivate
    void deactivate() {
        try {
            registration.unregister();
        } catch (IllegalStateException alreadyGone) {
            LOG.debug("registration already gone: the framework withdrew the service when the bundle stopped",
                    alreadyGone);
        }
    }
}
