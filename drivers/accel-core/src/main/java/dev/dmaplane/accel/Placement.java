package dev.dmaplane.accel;

/** Where a buffer object's bytes may live, as TTM's memory types ({@code TTM_PL_VRAM}, {@code TTM_PL_SYSTEM}). */
public enum Placement {
    /** Anywhere in VRAM, the window included; the core uses the part only the GPU reaches first. */
    VRAM,
    /** VRAM below the BAR's size: the CPU- and peer-visible window ({@code AMDGPU_GEM_CREATE_CPU_ACCESS_REQUIRED}). */
    VISIBLE_VRAM,
    /** Host page frames, mapped for the GPU with its DMA API ({@code TTM_PL_TT}). */
    HOST
}
