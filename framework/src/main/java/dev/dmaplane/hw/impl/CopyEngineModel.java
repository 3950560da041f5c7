package dev.dmaplane.hw.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import org.osgi.service.component.annotations.Component;

/**
 * The {@code copyengine} model, the SDK's simplest example of a device model: a copy engine behind BAR0 (any memory
 * BAR is plain device memory). Registered like any other model: an OSGi service in the runtime, a
 * {@link java.util.ServiceLoader} provider on a plain class path.
 */
@Component(service = DeviceModel.class)
public final class CopyEngineModel implements DeviceModel {
    /** The name machine files give it. */
    public static final String NAME = "copyengine";

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public ModelDevice realize(ModelContext ctx) {
        if (ctx.function().bar(0).isEmpty()) {
            throw new ErrnoException(Errno.EINVAL, "model 'copyengine' needs BAR0 for its registers; "
                    + ctx.function().bdf() + " has none");
        }
        CopyEngine engine = new CopyEngine(ctx);
        ctx.registers(0, engine);
        return engine;
    }
}
