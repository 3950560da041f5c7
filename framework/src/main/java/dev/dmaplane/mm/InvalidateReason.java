package dev.dmaplane.mm;

/** Why a range is invalidated ({@code enum mmu_notifier_event} in {@code include/linux/mmu_notifier.h}). */
public enum InvalidateReason {
    /** {@code MMU_NOTIFY_UNMAP}: the range is being unmapped ({@code munmap}, {@code MAP_FIXED} replacement). */
    UNMAP,
    /**
     * {@code MMU_NOTIFY_CLEAR}: page-table entries are cleared while the VMA stays: truncate, hole punch,
     * copy-on-write replacing a page.
     */
    CLEAR,
    /** {@code MMU_NOTIFY_PROTECTION_VMA}: {@code mprotect} changed the access rights. */
    PROTECTION,
    /** {@code MMU_NOTIFY_MIGRATE}: a page moves to another frame. */
    MIGRATE,
    /** {@code MMU_NOTIFY_RELEASE}: the address space is torn down ({@code exit_mmap}). */
    RELEASE
}
