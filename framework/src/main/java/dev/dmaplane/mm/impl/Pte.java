package dev.dmaplane.mm.impl;

/**
 * A page-table entry packed in a {@code long}: the frame number shifted left by three, bit 0 present, bit 1 set
 * when the frame is an anonymous page owned by this mapping (a zero-filled page or a copy-on-write copy) rather
 * than a page-cache page or DAX block shared with the file, bit 2 set for a special entry ({@code pte_special},
 * what {@code remap_pfn_range} and {@code vmf_insert_pfn} install in a {@code VM_PFNMAP} VMA): a page of a
 * device's BAR, with no {@code struct page} and so no reference. 0 is {@code pte_none}. Every other present entry
 * holds one reference on its frame.
 */
final class Pte {
    static final long NONE = 0;
    private static final long PRESENT = 1;
    private static final long ANON = 2;
    private static final long SPECIAL = 4;
    private static final int PFN_SHIFT = 3;

    private Pte() {
    }

    static long of(long pfn, boolean anon) {
        return (pfn << PFN_SHIFT) | PRESENT | (anon ? ANON : 0);
    }

    /** {@code pte_mkspecial(pfn_pte(pfn, prot))}: a BAR page, holding no reference. */
    static long special(long pfn) {
        return (pfn << PFN_SHIFT) | PRESENT | SPECIAL;
    }

    static long pfn(long pte) {
        return pte >>> PFN_SHIFT;
    }

    /** {@code PageAnon}: the frame belongs to this mapping, not to a file. */
    static boolean anon(long pte) {
        return (pte & ANON) != 0;
    }

    /** {@code pte_special}: no frame of host memory behind it, nothing to put when it is zapped. */
    static boolean isSpecial(long pte) {
        return (pte & SPECIAL) != 0;
    }
}
