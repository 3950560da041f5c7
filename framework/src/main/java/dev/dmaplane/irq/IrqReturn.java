package dev.dmaplane.irq;

/** What a handler reports ({@code irqreturn_t}). */
public enum IrqReturn {
    /** The interrupt was not from this device ({@code IRQ_NONE}); counted as unhandled. */
    NONE,
    /** The handler dealt with it ({@code IRQ_HANDLED}). */
    HANDLED,
    /** A hard handler asks for the threaded part to run ({@code IRQ_WAKE_THREAD}). */
    WAKE_THREAD
}
