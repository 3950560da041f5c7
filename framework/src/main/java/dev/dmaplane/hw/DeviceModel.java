package dev.dmaplane.hw;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * A kind of emulated hardware that machine files place with {@code model: NAME} (QEMU's {@code TypeInfo} and its
 * {@code realize}). Models come as OSGi services of this type, or through {@link java.util.ServiceLoader} on a
 * plain class path. A model arriving is its hardware arriving in every slot that names it (hot-add, drivers
 * bind); a model leaving is a surprise removal of that hardware.
 */
@ConsumerType
public interface DeviceModel {
    /** The name machine files use: lower-case letters, digits, {@code -} and {@code _}, at most 32 characters. */
    String name();

    /**
     * Brings up the hardware of one function: registers its BARs through {@code ctx} and returns the device's state.
     * The function's config space is in its power-on state and no driver is bound yet. Whatever {@code ctx}
     * registered is undone by the machine when the device leaves, or when this method throws.
     *
     * @throws dev.dmaplane.errno.ErrnoException when the function does not suit the model (a BAR it needs is
     *                                           missing, a property is bad): the function stays absent, and
     *                                           {@code lspci} says why
     */
    ModelDevice realize(ModelContext ctx);
}
