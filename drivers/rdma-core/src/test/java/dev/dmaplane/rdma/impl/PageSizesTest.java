package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.DmaSegment;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code ib_umem_find_best_pgsz} ({@code drivers/infiniband/core/umem.c}) on hand-made DMA lists: the page size
 * is bounded by the bits where IOVA and DMA address differ, by the IOVA alignment of every interior segment
 * boundary, and by the smallest supported size that covers the region's span; sizes below PAGE_SIZE are never
 * chosen. {@code rdma_umem_for_each_dma_block} then gives one DMA address per block.
 */
class PageSizesTest {
    private static final long K4 = 1 << 12;
    private static final long K64 = 1 << 16;
    private static final long M1 = 1 << 20;
    private static final long M2 = 1 << 21;
    private static final long G1 = 1L << 30;
    private static final long X86 = K4 | M2 | G1;
    private static final long VA = 0x7f00_0000_0000L;

    private static DmaSegment seg(long dma, long len) {
        return new DmaSegment(dma, len);
    }

    @Test
    void alignedVaAndDmaGetTheLargePage() {
        assertEquals(M2, PageSizes.best(List.of(seg(0x4000_0000L, M2)), M2, X86, VA));
        assertEquals(G1, PageSizes.best(List.of(seg(0x4000_0000L, 4 * M2)), 4 * M2, X86, VA),
                "both addresses are 1 GiB aligned: one 1 GiB page covers the 8 MiB");
        assertEquals(M2, PageSizes.best(List.of(seg(0x4020_0000L, 4 * M2)), 4 * M2, X86, VA), "DMA only 2 MiB aligned");
    }

    @Test
    void aDmaAddressOffTheVaAlignmentLimitsThePage() {
        assertEquals(K4, PageSizes.best(List.of(seg(0x4000_1000L, M2)), M2, X86, VA));
        assertEquals(K64, PageSizes.best(List.of(seg(0x4001_0000L, M2)), M2, K4 | K64 | M2, VA));
    }

    @Test
    void aSmallRegionTakesTheSmallestPageThatCoversItsSpan() {
        assertEquals(K64, PageSizes.best(List.of(seg(0x4000_0000L, 8192)), 8192, K4 | K64 | M2, VA),
                "one aligned 64 KiB page covers 8 KiB; 2 MiB is never needed");
        assertEquals(M2, PageSizes.best(List.of(seg(0x4000_0000L, 8192)), 8192, X86, VA),
                "with 4 KiB and 2 MiB only, the 2 MiB page covers 8 KiB in one entry");
    }

    @Test
    void interiorBoundariesMustBePageAlignedInIova() {
        List<DmaSegment> two = List.of(seg(0x4000_0000L, M1), seg(0x9010_0000L, M1));
        assertEquals(M1, Long.highestOneBit(PageSizes.best(two, 2 * M1, -1L << 12, VA)),
                "the break 1 MiB into the region allows at most 1 MiB pages");
        assertEquals(K64, PageSizes.best(two, 2 * M1, K4 | K64 | M2, VA));
    }

    @Test
    void aFirstPageOffsetIsPartOfBothAddresses() {
        assertEquals(M2, PageSizes.best(List.of(seg(0x4000_0100L, M2 - 0x100)), M2 - 0x100, X86, VA + 0x100));
        assertEquals(0, PageSizes.best(List.of(seg(0x4000_0200L, M2 - 0x100)), M2 - 0x100, X86, VA + 0x100),
                "page offsets that differ fit no page at all (the DMA API never does that, so real regions get >= 4 KiB)");
    }

    @Test
    void nothingBelowPageSizeAndZeroWhenNothingFits() {
        assertEquals(K4, PageSizes.best(List.of(seg(0x4000_0800L, 2048)), 2048, 2048 | K4, VA + 0x800));
        assertEquals(0, PageSizes.best(List.of(seg(0x4000_1000L, M2)), M2, M2, VA), "only 2 MiB, not aligned");
        assertEquals(0, PageSizes.best(List.of(seg(0x4000_0000L, K4)), K4, 2048, VA));
    }

    @Test
    void blocksAreTheAlignedDmaAddressOfEachPage() {
        List<DmaSegment> s = List.of(seg(0x4000_0100L, 3 * K4 - 0x100), seg(0x8000_0000L, K4 + 5));
        assertArrayEquals(new long[]{0x4000_0000L, 0x4000_1000L, 0x4000_2000L, 0x8000_0000L, 0x8000_1000L},
                PageSizes.blocks(s, 4 * K4 - 0x100 + 5, K4, VA + 0x100));
    }
}
