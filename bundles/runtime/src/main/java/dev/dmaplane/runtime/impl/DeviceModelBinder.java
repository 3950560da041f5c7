package dev.dmaplane.runtime.impl;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.machine.Machine;
import org.osgi.framework.Bundle;
import org.osgi.framework.ServiceReference;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The bridge between the OSGi service registry and the machine's hardware: a {@link DeviceModel} service appearing
 * is its hardware arriving in every slot that names it (drivers bind), its going away a surprise removal. Stopping
 * a driver bundle never comes here: only models make hardware come and go.
 */
@Component(immediate = true, service = {})
public final class DeviceModelBinder {
    private static final Logger LOG = LoggerFactory.getLogger(DeviceModelBinder.class);

    private final Machine machine;

    @Activate
    public DeviceModelBinder(@Reference Machine machine) {
        this.machine = machine;
    }

    @Reference(cardinality = ReferenceCardinality.MULTIPLE, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY)
    void bindModel(DeviceModel model, ServiceReference<DeviceModel> ref) {
        String from = bundleName(ref);
        try {
            machine.addModel(model);
            LOG.info("device model '{}' from {}: hardware arrived", model.name(), from);
        } catch (ErrnoException e) {
            LOG.error("device model from {} refused: {}", from, e.getMessage());
        } catch (RuntimeException e) {
            LOG.error("device model from {} failed to arrive", from, e);
        }
    }

    void unbindModel(DeviceModel model, ServiceReference<DeviceModel> ref) {
        try {
            if (machine.removeModel(model)) {
                LOG.info("device model '{}' from {}: hardware removed", model.name(), bundleName(ref));
            }
        } catch (RuntimeException e) {
            LOG.error("removing device model from {} failed", bundleName(ref), e);
        }
    }

    private static String bundleName(ServiceReference<?> ref) {
        Bundle b = ref == null ? null : ref.getBundle();
        return b == null ? "?" : b.getSymbolicName() + " " + b.getVersion();
    }
}
