package dev.dmaplane.mm;

/** VMA flags beyond the protection bits ({@code vm_flags} in {@code include/linux/mm.h}). */
public enum VmaFlag {
    /** {@code VM_SHARED}: writes reach the file (or other mappers) instead of private copies. */
    SHARED,
    /** {@code VM_IO}: memory-mapped I/O; {@code pin_user_pages} refuses it ({@code check_vma_flags}). */
    IO,
    /** {@code VM_PFNMAP}: raw page frames without {@code struct page} ({@code remap_pfn_range}), never pinned. */
    PFNMAP
}
