package dev.dmaplane.accel.spi;

/** Where a GPU address points, as a GPU page-table entry's aperture bits say ({@code XE_PPGTT_PTE_DM}, amdgpu's {@code AMDGPU_PTE_SYSTEM}). */
public enum Aperture {
    /** An offset into the device's VRAM. */
    VRAM,
    /** A bus (DMA) address, reached through the GPU function's bus master, so the IOMMU translates and checks it. */
    SYSTEM;

    /** Bit 63 of a GPU address: set for {@link #SYSTEM}, clear for {@link #VRAM}. */
    public static final long SYSTEM_BIT = 1L << 63;

    /** {@code address} tagged with this aperture, as the GPU's engines and page tables carry it. */
    public long encode(long address) {
        return this == SYSTEM ? address | SYSTEM_BIT : address & ~SYSTEM_BIT;
    }

    /** The aperture of a tagged GPU address. */
    public static Aperture of(long gpuAddress) {
        return (gpuAddress & SYSTEM_BIT) != 0 ? SYSTEM : VRAM;
    }
}
