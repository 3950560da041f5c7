package dev.dmaplane.mm.impl;

/**
 * A page-table entry packed in a {@code long}: the frame number shifted left by two, bit 0 present, bit 1 set
 * when the frame is an anonymous page owned by this mapping (a zero-filled page or a copy-on-write copy) rather
 * than a page-cache page or DAX block shared with the file. 0 is {@code pte_none}. Every present entry holds one
 * reference on its frame.
 */
final class Pte {
    static final long NONE = 0;
    private static final long PRESENT = 1;
    private static final long ANON = 2;

    private Pte() {
    }

    static long of(long pfn, boolean anon) {
        return (pfn << 2) | PRESENT | (anon ? ANON : 0);
    }

    static long pfn(long pte) {
        return pte >>> 2;
    }

    /** {@code PageAnon}: the frame belongs to this mapping, not to a file. */
    static boolean anon(long pte) {
        return (pte & ANON) != 0;
    }
}
