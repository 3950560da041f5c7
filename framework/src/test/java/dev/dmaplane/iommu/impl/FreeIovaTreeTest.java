package dev.dmaplane.iommu.impl;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

class FreeIovaTreeTest {

    /** Reference: the highest size-aligned start below the limit, found by trying every aligned frame. */
    private static long bruteForce(boolean[] free, long base, long frames, long limit) {
        long align = FreeIovaTree.roundUpPow2(frames);
        long top = Math.min(limit, base + free.length);
        for (long x = (top - frames) & -align; x >= base; x -= align) {
            boolean ok = true;
            for (long f = x; f < x + frames && ok; f++) {
                ok = free[(int) (f - base)];
            }
            if (ok) {
                return x;
            }
        }
        return -1;
    }

    private static List<long[]> runs(boolean[] free, long base) {
        List<long[]> runs = new ArrayList<>();
        int i = 0;
        while (i < free.length) {
            if (!free[i]) {
                i++;
                continue;
            }
            int j = i;
            while (j < free.length && free[j]) {
                j++;
            }
            runs.add(new long[] {base + i, base + j});
            i = j;
        }
        return runs;
    }

    private static List<long[]> ranges(FreeIovaTree tree) {
        List<long[]> out = new ArrayList<>();
        tree.forEachRange((s, e) -> out.add(new long[] {s, e}));
        return out;
    }

    @Test
    void capacityMatchesTheLargestSizeAlignedRequest() {
        for (long start = 1; start < 70; start++) {
            for (long end = start + 1; end < 140; end++) {
                long best = 0;
                for (long n = 1; n <= end - start; n++) {
                    long align = FreeIovaTree.roundUpPow2(n);
                    if (FreeIovaTree.alignUp(start, align) + n <= end) {
                        best = n;
                    }
                }
                assertEquals(best, FreeIovaTree.capacity(start, end), "[" + start + "," + end + ")");
            }
        }
    }

    @Test
    void randomisedAgainstBruteForceModel() {
        long base = 1000;
        int span = 3000;
        boolean[] free = new boolean[span];
        Arrays.fill(free, true);
        FreeIovaTree tree = new FreeIovaTree();
        tree.addRange(base, base + span);
        Random rnd = new Random(42);
        List<long[]> live = new ArrayList<>();
        for (int step = 0; step < 20_000; step++) {
            if (live.isEmpty() || rnd.nextInt(100) < 55) {
                long frames = rnd.nextInt(5) == 0 ? 1 + rnd.nextInt(300) : 1 + rnd.nextInt(9);
                long limit = rnd.nextBoolean() ? base + span : base + rnd.nextInt(span + 1);
                long expected = bruteForce(free, base, frames, limit);
                long got = tree.allocSizeAligned(frames, limit);
                assertEquals(expected, got, "step " + step + ": alloc " + frames + " below " + limit);
                if (got >= 0) {
                    for (long f = got; f < got + frames; f++) {
                        free[(int) (f - base)] = false;
                    }
                    live.add(new long[] {got, frames});
                }
            } else {
                long[] a = live.remove(rnd.nextInt(live.size()));
                tree.release(a[0], a[1]);
                for (long f = a[0]; f < a[0] + a[1]; f++) {
                    free[(int) (f - base)] = true;
                }
            }
            if (step % 97 == 0) {
                List<long[]> want = runs(free, base);
                List<long[]> have = ranges(tree);
                assertEquals(want.size(), have.size(), "step " + step + " range count");
                assertEquals(want.size(), tree.ranges());
                for (int i = 0; i < want.size(); i++) {
                    assertEquals(want.get(i)[0], have.get(i)[0]);
                    assertEquals(want.get(i)[1], have.get(i)[1]);
                }
            }
        }
        for (long[] a : live) {
            tree.release(a[0], a[1]);
        }
        assertEquals(1, tree.ranges(), "everything coalesces back into one range");
        assertEquals(span, tree.freeFrames());
    }

    @Test
    void releasingFreeFramesIsRefused() {
        FreeIovaTree tree = new FreeIovaTree();
        tree.addRange(16, 64);
        long pfn = tree.allocSizeAligned(8, 64);
        assertEquals(56, pfn);
        assertThrows(IllegalStateException.class, () -> tree.release(48, 16));
        assertThrows(IllegalStateException.class, () -> tree.release(20, 4));
        assertTrue(tree.isFree(16, 40));
        tree.release(56, 8);
        assertEquals(48, tree.freeFrames());
    }
}
