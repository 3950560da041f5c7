package dev.dmaplane.vfio;

/** {@code struct vfio_iova_range}: usable IOVAs from {@code start} to {@code end}, inclusive. */
public record IovaRange(long start, long end) {
}
