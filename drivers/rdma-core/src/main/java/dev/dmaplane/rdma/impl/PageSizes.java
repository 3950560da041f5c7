package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.mem.HostMemory;

import java.util.List;

/**
 * {@code ib_umem_find_best_pgsz} ({@code drivers/infiniband/core/umem.c}): the largest page size, among those
 * the HCA supports, with which one page-size-aligned block of IOVA maps one aligned block of DMA addresses over
 * the whole region, so the HCA's translation table needs the fewest entries.
 */
public final class PageSizes {
    private static final int PAGE_SHIFT = HostMemory.PAGE_SHIFT;

    private PageSizes() {
    }

    /**
     * @param segments    the region's DMA segments in order; the first starts at the first byte (page offset
     *                    included), interior boundaries are page aligned
     * @param length      bytes of the region
     * @param pgszBitmap  page sizes the HCA supports (bit n: 2^n)
     * @param virt        the IOVA of the first byte
     * @return the best page size, or 0 when none fits
     */
    public static long best(List<DmaSegment> segments, long length, long pgszBitmap, long virt) {
        // rdma_for_each_block cannot walk pages smaller than those the umem was built of
        pgszBitmap &= ~((1L << PAGE_SHIFT) - 1);
        if (pgszBitmap == 0 || length <= 0) {
            return 0;
        }
        // the page size must not exceed what covers the span of IOVA bits that change over the region
        int span = bitsPer((length - 1 + virt) ^ virt);
        long mask = span >= 64 ? 0 : pgszBitmap & ~((1L << span) - 1);
        long va = virt;
        for (int i = 0; i < segments.size(); i++) {
            DmaSegment s = segments.get(i);
            // low bits where the IOVA and the DMA address disagree cannot be inside one page
            mask |= s.dmaAddress() ^ va;
            va += s.length();
            // except after the last segment, the next one must start a page: its IOVA alignment bounds the size
            if (i != segments.size() - 1) {
                mask |= va;
            }
        }
        if (mask != 0) {
            int tz = Long.numberOfTrailingZeros(mask);
            pgszBitmap &= tz >= 63 ? -1L : (1L << (tz + 1)) - 1;
        }
        return pgszBitmap == 0 ? 0 : Long.highestOneBit(pgszBitmap);
    }

    /** The kernel's {@code bits_per}: bits needed to write {@code n}, at least 1. */
    static int bitsPer(long n) {
        return n == 0 || n == 1 ? 1 : 64 - Long.numberOfLeadingZeros(n);
    }

    /**
     * {@code rdma_umem_for_each_dma_block}: the DMA address of every {@code pgsz} block of the region, from
     * {@code virt} rounded down to {@code pgsz}.
     */
    public static long[] blocks(List<DmaSegment> segments, long length, long pgsz, long virt) {
        long first = virt & -pgsz;
        long end = (virt + length + pgsz - 1) & -pgsz;
        long n = (end - first) / pgsz;
        if (n > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("too many blocks: " + n);
        }
        long[] out = new long[(int) n];
        int k = 0;
        for (DmaSegment s : segments) {
            long start = s.dmaAddress() & -pgsz;
            long stop = s.dmaAddress() + s.length();
            for (long a = start; a < stop && k < out.length; a += pgsz) {
                if (k > 0 && out[k - 1] == a) {
                    continue;
                }
                out[k++] = a;
            }
        }
        if (k != out.length) {
            throw new IllegalStateException("segments give " + k + " blocks of " + pgsz + ", the region needs " + n);
        }
        return out;
    }
}
