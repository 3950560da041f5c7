package dev.dmaplane.testing;

import java.time.Duration;
import java.util.function.BooleanSupplier;

/** A bounded wait for a condition another thread makes true: spins (no sleep), fails with the message at the bound. */
public final class Eventually {
    private Eventually() {
    }

    public static void eventually(BooleanSupplier condition, Duration timeout, String message) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() - deadline > 0) {
                throw new AssertionError(message + " (not within " + timeout.toMillis() + " ms)");
            }
            Thread.onSpinWait();
        }
    }
}
