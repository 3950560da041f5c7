package dev.dmaplane.fence;

/**
 * One slot of a {@link Reservation}: a fence and the usage it was added with, as {@code dma_resv_iter} reports
 * them through {@code dma_resv_iter_usage}.
 */
public record ResvFence(Fence fence, ResvUsage usage) {
}
