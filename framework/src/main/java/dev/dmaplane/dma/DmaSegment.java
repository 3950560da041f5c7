package dev.dmaplane.dma;

/**
 * One device-side segment of a mapped scatter-gather list ({@code sg_dma_address}, {@code sg_dma_len}).
 *
 * @param dmaAddress the bus address (IOVA) the device uses
 * @param length     bytes
 */
public record DmaSegment(long dmaAddress, long length) {
}
