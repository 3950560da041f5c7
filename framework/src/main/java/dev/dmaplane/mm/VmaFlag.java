package dev.dmaplane.mm;

/** VMA flags beyond the protection bits ({@code vm_flags} in {@code include/linux/mm.h}). */
public enum VmaFlag {
    /** {@code VM_SHARED}: writes reach the file (or other mappers) instead of private copies. */
    SHARED
}
