package dev.dmaplane.dmabuf.impl;

import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.machine.Machine;
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
 * Offers the runtime {@link Machine}'s one {@link DmaBufs} ({@code dmabuf_list}) as an OSGi service, for exporter
 * drivers, importers and shell commands. The registry is the machine's own ({@link DmaBufs#of}), so deactivation
 * only withdraws the service. Registered by hand (its type is a final API class), so the capability is declared
 * for resolvers.
 */
@Capability(namespace = "osgi.service", attribute = "objectClass:List<String>=dev.dmaplane.dmabuf.DmaBufs",
        uses = DmaBufs.class)
@Component(immediate = true, service = {})
public final class DmaBufsComponent {
    private static final Logger LOG = LoggerFactory.getLogger(DmaBufsComponent.class);

    private final ServiceRegistration<DmaBufs> registration;

    @Activate
    public DmaBufsComponent(BundleContext context, @Reference Machine machine) {
        this.registration = context.registerService(DmaBufs.class, DmaBufs.of(machine), null);
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
