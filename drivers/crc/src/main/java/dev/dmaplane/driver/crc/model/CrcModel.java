package dev.dmaplane.driver.crc.model;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import org.osgi.service.component.annotations.Component;

/** The {@code crc} device model (QEMU's {@code TypeInfo}): a CRC32C offload engine behind BAR0. */
@Component(service = DeviceModel.class)
public final class CrcModel implements DeviceModel {
    /** The name machine files give it. */
    public static final String NAME = "crc";

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public ModelDevice realize(ModelContext ctx) {
        if (ctx.function().bar(0).isEmpty()) {
            throw new ErrnoException(Errno.EINVAL, "model 'crc' needs BAR0 for its registers on " + ctx.function().bdf());
        }
        CrcEngine engine = new CrcEngine(ctx);
        ctx.registers(0, engine);
        return engine;
    }
}
