package dev.dmaplane.rdma.impl;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The one range check of keyed accesses, windows and translations, against rdma_rxe's {@code mr_check_range}
 * ({@code rxe_mr.c}) in {@code u64} arithmetic: inside only when {@code iova >= start}, {@code len <= length} and
 * {@code iova - start <= length - len}, with the access's end not wrapping past 2^64.
 */
class IovaRangeTest {
    private static final long TOP = 1L << 63;

    @Test
    void theEdgesOfTheRangeAreInsideAndOneByteMoreIsNot() {
        IovaRange r = new IovaRange(0x10000, 0x4000);
        assertTrue(r.covers(0x10000, 0x4000));
        assertTrue(r.covers(0x13fff, 1));
        assertTrue(r.covers(0x14000, 0), "an empty access at the end");
        assertFalse(r.covers(0x13fff, 2));
        assertFalse(r.covers(0xffff, 1));
        assertFalse(r.covers(0x10000, 0x4001));
    }

    @Test
    void addressesFromStartPlusTwoToThe63DoNotWrapBackInside() {
        IovaRange r = new IovaRange(0x10000, 0x4000);
        assertFalse(r.covers(0x10000 + TOP, 1));
        assertFalse(r.covers(0x12000 ^ TOP, 0x1000), "the issue's address: low bits at offset 0x2000");
        assertFalse(r.covers(-1, 1));
        assertFalse(r.covers(-0x1000, 0x2000), "address + length wraps past 2^64");
        assertFalse(r.covers(0x10000, -1), "a negative length is 2^64 - 1 bytes");
        assertFalse(r.covers(0x10000, TOP));
    }

    @Test
    void rangesAboveTwoToThe63AreUnsignedToo() {
        IovaRange r = new IovaRange(0xFFFF_FFFF_FFFF_0000L, 0x8000);
        assertTrue(r.covers(0xFFFF_FFFF_FFFF_7FF8L, 8));
        assertFalse(r.covers(0xFFFF_FFFF_FFFF_7FF8L, 9));
        assertFalse(r.covers(0x7FFF_FFFF_FFFF_0000L, 8));
        IovaRange toTheTop = new IovaRange(-0x1000, 0x1000);
        assertTrue(toTheTop.covers(-16, 8));
        assertFalse(toTheTop.covers(-8, 8), "an end at 2^64 wraps to 0 (registration refuses such a region too)");
        assertFalse(toTheTop.covers(0, 8));
    }

    @Test
    void zeroBasedRangesStartAtZero() {
        IovaRange r = new IovaRange(0, 0x1000);
        assertTrue(r.covers(0, 0x1000));
        assertFalse(r.covers(TOP, 8));
        assertFalse(r.covers(-8, 8));
    }
}
