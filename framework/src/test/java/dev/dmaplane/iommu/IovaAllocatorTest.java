package dev.dmaplane.iommu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.function.Executable;

class IovaAllocatorTest {
    private static final long K4 = 4096;
    private static final long M2 = 2L << 20;

    private static void assertErrno(Errno errno, String inMessage, Executable call) {
        ErrnoException e = assertThrows(ErrnoException.class, call);
        assertEquals(errno, e.errno(), e.getMessage());
        assertTrue(e.getMessage().contains(inMessage), () -> "message '" + e.getMessage() + "' lacks " + inMessage);
    }

    private static long granules(long size) {
        return (size + K4 - 1) / K4;
    }

    private static long pow2(long n) {
        return n == 1 ? 1 : Long.highestOneBit(n - 1) << 1;
    }

    /** Expected alignment: roundup_pow_of_two(size in granules) granules. */
    private static long alignOf(long size) {
        return pow2(granules(size)) * K4;
    }

    /** Expected footprint: whole granules, rounded to a power of two below 32 granules. */
    private static long grantedOf(long size) {
        long g = granules(size);
        return (g < 32 ? pow2(g) : g) * K4;
    }

    /** {@code init_iova_domain} ({@code drivers/iommu/iova.c}): the granule is a power of two no larger than PAGE_SIZE. */
    @Test
    void constructorRejectsBadGeometry() {
        assertErrno(Errno.EINVAL, "8192", () -> new IovaAllocator(8192, 8192, 1L << 32));
        assertErrno(Errno.EINVAL, "3072", () -> new IovaAllocator(3072, 3072, 3072L << 20));
        assertErrno(Errno.EINVAL, "0", () -> new IovaAllocator(0, K4, 1L << 32));
        assertEquals(2048, new IovaAllocator(2048, 2048, 1L << 32).granule(), "a sub-page granule is allowed");
        assertErrno(Errno.EINVAL, "12288", () -> new IovaAllocator(12288, 12288, 1L << 32));
        assertErrno(Errno.EINVAL, "0x0", () -> new IovaAllocator(K4, 0, 1L << 32));
        assertErrno(Errno.EINVAL, "0x1001", () -> new IovaAllocator(K4, 0x1001, 1L << 32));
        assertErrno(Errno.EINVAL, "0x1000", () -> new IovaAllocator(K4, K4, K4));
    }

    @Test
    void allocationsAreSizeAlignedAndTopDown() {
        IovaAllocator a = new IovaAllocator(K4, K4, 1L << 32);
        long first = a.alloc(K4, 1L << 32);
        assertEquals((1L << 32) - K4, first, "top-down: the first page comes from the top");
        long[] sizes = {K4, 2 * K4, 3 * K4, 5000, 31 * K4, 32 * K4, 33 * K4, 100 * K4, M2, M2 + K4, 3 * M2};
        for (long size : sizes) {
            long iova = a.alloc(size, 1L << 32);
            long align = alignOf(size);
            assertEquals(0, iova % align, () -> "size " + size + " at 0x" + Long.toHexString(iova) + " not aligned to " + align);
        }
        assertEquals(0, alignOf(33 * K4) - 64 * K4, "33 granules align to 64");
    }

    @Test
    void smallSizesAreRoundedToPowersOfTwoLargeOnesToGranules() {
        IovaAllocator a = new IovaAllocator(K4, K4, 1L << 32);
        a.alloc(3 * K4, 1L << 32);
        assertEquals(4 * K4, a.allocatedBytes());
        a.alloc(5000, 1L << 32);
        assertEquals(6 * K4, a.allocatedBytes());
        a.alloc(33 * K4, 1L << 32);
        assertEquals(39 * K4, a.allocatedBytes(), "33 granules are not rounded to 64");
        a.alloc(1, 1L << 32);
        assertEquals(40 * K4, a.allocatedBytes());
        assertEquals(4, a.liveAllocations());
    }

    @Test
    void limitIsRespectedByTreeAndCache() {
        IovaAllocator a = new IovaAllocator(K4, K4, 1L << 40);
        long high = a.alloc(K4, 1L << 40);
        assertEquals((1L << 40) - K4, high);
        a.free(high, K4); // now sits in the per-CPU cache
        long low = a.alloc(K4, 1L << 32);
        assertTrue(low + K4 <= 1L << 32, () -> "0x" + Long.toHexString(low) + " is above the 32-bit limit");
        assertEquals((1L << 32) - K4, low);
        assertEquals(high, a.alloc(K4, 1L << 40), "the cached high IOVA is still there for a 64-bit device");
        long big = a.alloc(M2, 1L << 31);
        assertEquals((1L << 31) - M2, big);
        long odd = a.alloc(K4, 0x12345678L);
        assertTrue(odd + K4 <= 0x12345678L);
    }

    @Test
    void freedSmallIovaIsReusedFromTheCache() {
        IovaAllocator a = new IovaAllocator(K4, K4, 1L << 32);
        long x = a.alloc(8 * K4, 1L << 32);
        long y = a.alloc(8 * K4, 1L << 32);
        a.free(x, 8 * K4);
        assertEquals(x, a.alloc(8 * K4, 1L << 32), "an alloc after a free of the same size takes it back");
        assertNotEquals(x, y);
    }

    @Test
    void cacheSpillsToDepotAndTreeWithoutLosingOrDuplicatingIovas() {
        long start = 1L << 26;
        long pages = 20_000;
        IovaAllocator a = new IovaAllocator(K4, start, start + pages * K4);
        Set<Long> seen = new HashSet<>();
        long[] got = new long[(int) pages];
        for (int round = 0; round < 3; round++) {
            seen.clear();
            for (int i = 0; i < pages; i++) {
                got[i] = a.alloc(K4, Long.MAX_VALUE);
                assertTrue(seen.add(got[i]), "IOVA 0x" + Long.toHexString(got[i]) + " handed out twice");
            }
            assertErrno(Errno.ENOMEM, "4096", () -> a.alloc(K4, Long.MAX_VALUE));
            for (long iova : got) {
                a.free(iova, K4); // far more than the magazines and the depot hold
            }
            assertEquals(0, a.liveAllocations());
        }
        assertEquals(start, a.alloc(16384 * K4, Long.MAX_VALUE), "all cached pages come back for one big block");
    }

    @Test
    void exhaustionIsEnomemAndChangesNothing() {
        IovaAllocator a = new IovaAllocator(K4, 16 * K4, 32 * K4);
        List<Long> pages = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            pages.add(a.alloc(K4, 1L << 32));
        }
        assertEquals(16 * K4, a.allocatedBytes());
        assertErrno(Errno.ENOMEM, "4096 bytes", () -> a.alloc(K4, 1L << 32));
        assertErrno(Errno.ENOMEM, "262144", () -> a.alloc(K4 * 64, 1L << 32));
        assertEquals(16 * K4, a.allocatedBytes());
        assertEquals(16, a.liveAllocations());
        a.free(pages.get(5), K4);
        assertEquals(pages.get(5), a.alloc(K4, 1L << 32));
        for (long p : pages) {
            a.free(p, K4);
        }
        assertEquals(0, a.allocatedBytes());
        assertEquals(16 * K4, a.alloc(16 * K4, 1L << 32), "cached pages are flushed back to make room for one block");
        assertErrno(Errno.ENOMEM, "limit 0x10000", () -> new IovaAllocator(K4, 16 * K4, 32 * K4).alloc(K4, 16 * K4));
    }

    @Test
    void badArgumentsAreEinval() {
        IovaAllocator a = new IovaAllocator(K4, K4, 1L << 32);
        assertErrno(Errno.EINVAL, "0", () -> a.alloc(0, 1L << 32));
        assertErrno(Errno.EINVAL, "-5", () -> a.alloc(-5, 1L << 32));
        assertErrno(Errno.EINVAL, "0x0", () -> a.alloc(K4, 0));
        assertEquals(0, a.liveAllocations());
    }

    @Test
    void badAndDoubleFreesAreEinvalAndChangeNothing() {
        IovaAllocator a = new IovaAllocator(K4, K4, 1L << 32);
        long x = a.alloc(3 * K4, 1L << 32);
        String hex = "0x" + Long.toHexString(x);
        assertErrno(Errno.EINVAL, "0x1000", () -> a.free(0x1000, K4));
        assertErrno(Errno.EINVAL, "0x" + Long.toHexString(x + 1), () -> a.free(x + 1, 3 * K4));
        assertErrno(Errno.EINVAL, hex, () -> a.free(x, 4 * K4));
        assertErrno(Errno.EINVAL, hex, () -> a.free(x, 0));
        assertErrno(Errno.EINVAL, "0x" + Long.toHexString(x - 4 * K4), () -> a.free(x - 4 * K4, 3 * K4));
        assertEquals(1, a.liveAllocations());
        assertEquals(4 * K4, a.allocatedBytes());
        a.free(x, 3 * K4);
        assertErrno(Errno.EINVAL, hex, () -> a.free(x, 3 * K4));
        assertEquals(0, a.liveAllocations());
        long big = a.alloc(40 * K4, 1L << 32);
        a.free(big, 40 * K4);
        assertErrno(Errno.EINVAL, "0x" + Long.toHexString(big), () -> a.free(big, 40 * K4));
    }

    @Test
    void randomisedChurnNeverOverlapsAndDoesNotFragment() {
        long start = 1L << 30;
        long end = 1L << 31;
        IovaAllocator a = new IovaAllocator(K4, start, end);
        Random rnd = new Random(20260101L);
        TreeMap<Long, Long> live = new TreeMap<>();
        TreeMap<Long, Long> footprint = new TreeMap<>();
        long expectedBytes = 0;
        List<Long> order = new ArrayList<>();
        for (int step = 0; step < 30_000; step++) {
            if (order.isEmpty() || rnd.nextInt(100) < 55) {
                long size = switch (rnd.nextInt(4)) {
                    case 0 -> K4 * (1 + rnd.nextInt(4));
                    case 1 -> 1 + rnd.nextInt((int) (32 * K4));
                    case 2 -> K4 * (33 + rnd.nextInt(600));
                    default -> M2 * (1 + rnd.nextInt(3)) + K4 * rnd.nextInt(3);
                };
                long limit = rnd.nextInt(4) == 0 ? start + (1L << 28) + K4 * rnd.nextInt(1 << 16) : end;
                long iova;
                try {
                    iova = a.alloc(size, limit);
                } catch (ErrnoException e) {
                    assertEquals(Errno.ENOMEM, e.errno());
                    continue;
                }
                long granted = grantedOf(size);
                assertEquals(0, iova % alignOf(size), "alignment");
                assertTrue(iova >= start && iova + size <= Math.min(limit, end), "inside domain and limit");
                Map.Entry<Long, Long> below = footprint.floorEntry(iova + granted - 1);
                assertTrue(below == null || below.getKey() + below.getValue() <= iova,
                        () -> "0x" + Long.toHexString(iova) + " overlaps live 0x" + Long.toHexString(below.getKey()));
                live.put(iova, size);
                footprint.put(iova, granted);
                expectedBytes += granted;
                order.add(iova);
            } else {
                long iova = order.remove(rnd.nextInt(order.size()));
                a.free(iova, live.remove(iova));
                expectedBytes -= footprint.remove(iova);
            }
            assertEquals(live.size(), a.liveAllocations());
            assertEquals(expectedBytes, a.allocatedBytes());
        }
        for (Map.Entry<Long, Long> e : live.entrySet()) {
            a.free(e.getKey(), e.getValue());
        }
        assertEquals(0, a.liveAllocations());
        assertEquals(0, a.allocatedBytes());
        assertEquals(start, a.alloc(end - start, end), "after churn the whole space is one free range again");
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void concurrentAllocAndFreeFromFourThreads() throws Exception {
        long start = 1L << 26;
        long granules = 1 << 14;
        long end = start + granules * K4;
        IovaAllocator a = new IovaAllocator(K4, start, end);
        AtomicIntegerArray owner = new AtomicIntegerArray((int) granules);
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            List<Future<Integer>> results = new ArrayList<>();
            for (int t = 1; t <= 4; t++) {
                int id = t;
                results.add(pool.submit(() -> churn(a, owner, start, id, new Random(id))));
            }
            int total = 0;
            for (Future<Integer> f : results) {
                total += f.get(50, TimeUnit.SECONDS);
            }
            assertTrue(total > 0);
        } finally {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS), "worker threads did not stop");
        }
        assertEquals(0, a.liveAllocations());
        assertEquals(0, a.allocatedBytes());
        assertEquals(start, a.alloc(end - start, end));
    }

    /** Allocates and frees at random, claiming every granule it gets in {@code owner} so overlaps are caught. */
    private static int churn(IovaAllocator a, AtomicIntegerArray owner, long start, int id, Random rnd) {
        List<long[]> mine = new ArrayList<>();
        int allocations = 0;
        for (int i = 0; i < 40_000; i++) {
            if (mine.size() < 64 && (mine.isEmpty() || rnd.nextBoolean())) {
                long size = rnd.nextInt(8) == 0 ? K4 * (33 + rnd.nextInt(40)) : K4 << rnd.nextInt(5);
                long iova;
                try {
                    iova = a.alloc(size, Long.MAX_VALUE);
                } catch (ErrnoException e) {
                    continue;
                }
                for (long g = (iova - start) / K4; g < (iova - start + size) / K4; g++) {
                    if (!owner.compareAndSet((int) g, 0, id)) {
                        throw new AssertionError("thread " + id + " got 0x" + Long.toHexString(iova)
                                + " which overlaps an IOVA owned by thread " + owner.get((int) g));
                    }
                }
                mine.add(new long[] {iova, size});
                allocations++;
            } else {
                long[] m = mine.remove(rnd.nextInt(mine.size()));
                for (long g = (m[0] - start) / K4; g < (m[0] - start + m[1]) / K4; g++) {
                    owner.set((int) g, 0);
                }
                a.free(m[0], m[1]);
            }
        }
        for (long[] m : mine) {
            for (long g = (m[0] - start) / K4; g < (m[0] - start + m[1]) / K4; g++) {
                owner.set((int) g, 0);
            }
            a.free(m[0], m[1]);
        }
        return allocations;
    }
}
