package dev.dmaplane.dma;

import java.util.List;

/**
 * A scatter-gather table after {@link DmaApi#mapSg}: the CPU-side table, the direction it was mapped for, and
 * the device-side segments ({@code nents} returned by {@code dma_map_sg}, contiguous IOVA merged).
 */
public record MappedSg(SgTable table, DmaDirection direction, List<DmaSegment> segments) {
    public MappedSg {
        segments = List.copyOf(segments);
    }

    /** Total bytes mapped. */
    public long length() {
        return table.length();
    }
}
