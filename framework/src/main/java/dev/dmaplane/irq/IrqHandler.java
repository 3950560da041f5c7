package dev.dmaplane.irq;

import org.osgi.annotation.versioning.ConsumerType;

/** The hard or threaded part of an interrupt handler ({@code irq_handler_t}). */
@ConsumerType
@FunctionalInterface
public interface IrqHandler {
    /** Handles an interrupt on {@code vector} of the function. */
    IrqReturn handle(int vector);
}
