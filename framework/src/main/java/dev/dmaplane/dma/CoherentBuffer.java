package dev.dmaplane.dma;

import java.lang.foreign.MemorySegment;

/**
 * A coherent DMA allocation ({@code dma_alloc_coherent}): memory both the CPU and the device see without sync
 * calls.
 *
 * @param dmaAddress the address the device uses
 * @param size       bytes as requested
 * @param cpu        the CPU's view of the memory; closed (unusable) once the buffer is freed
 * @param physAddr   physical address of the first byte (what {@code virt_to_phys} would give)
 */
public record CoherentBuffer(long dmaAddress, long size, MemorySegment cpu, long physAddr) {
}
