package dev.dmaplane.dma.impl;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link RequestChecks#fitsWidth}, the requester's address-width check alone: a device drives addresses below
 * {@code 2^bits} (its hardware width, {@code dev.dmaplane.device.Device#dmaAddressBits}; the kernel's mask, which
 * {@code dma_capable} of {@code include/linux/dma-direct.h} compares the same way, {@code addr + size - 1 <= mask},
 * is not this check), and no request wraps past the end of the 64-bit space.
 */
class RequestChecksTest {
    @Test
    void theLastByteDecidesAgainstTheWidth() {
        long top32 = 1L << 32;
        assertTrue(RequestChecks.fitsWidth(top32 - 4096, 4096, 32), "ends at the last 32-bit byte");
        assertFalse(RequestChecks.fitsWidth(top32 - 4096, 4097, 32), "one byte past 2^32");
        assertFalse(RequestChecks.fitsWidth(top32, 1, 32), "starts at 2^32");
        assertTrue(RequestChecks.fitsWidth(top32, 1, 33));
        assertTrue(RequestChecks.fitsWidth(0, 1, 1));
        assertFalse(RequestChecks.fitsWidth(1, 2, 1));
    }

    @Test
    void sixtyFourBitsAcceptAllButAWrap() {
        assertTrue(RequestChecks.fitsWidth(-4096L, 4096, 64), "the last page of the 64-bit space");
        assertFalse(RequestChecks.fitsWidth(-4096L, 4097, 64), "wraps past 2^64 to 0");
        assertFalse(RequestChecks.fitsWidth(-1L, 2, 63), "wraps, and beyond 63 bits");
        assertFalse(RequestChecks.fitsWidth(1L << 63, 1, 63));
    }
}
