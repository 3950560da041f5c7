package dev.dmaplane.iommu;

import static dev.dmaplane.iommu.IoPageTable.PROT_READ;
import static dev.dmaplane.iommu.IoPageTable.PROT_WRITE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.function.Executable;

class IoPageTableTest {
    private static final long K4 = 4096;
    private static final long M2 = 2L << 20;
    private static final int RW = PROT_READ | PROT_WRITE;

    private record Run(long iova, long phys, long size, int prot) {
    }

    private static List<Run> listing(IoPageTable pt) {
        List<Run> runs = new ArrayList<>();
        pt.forEachMapping((iova, phys, size, prot) -> runs.add(new Run(iova, phys, size, prot)));
        return runs;
    }

    private static void assertErrno(Errno errno, String inMessage, Executable call) {
        ErrnoException e = assertThrows(ErrnoException.class, call);
        assertEquals(errno, e.errno(), e.getMessage());
        assertTrue(e.getMessage().contains(inMessage), () -> "message '" + e.getMessage() + "' lacks " + inMessage);
    }

    @Test
    void pageMappingTranslatesEachByte() {
        IoPageTable pt = new IoPageTable();
        pt.map(0x7f0000_1000L, 0x8_0000_3000L, K4, PROT_READ);
        long leaf = pt.walk(0x7f0000_1abcL);
        assertNotEquals(0, leaf);
        assertEquals(0x8_0000_3abcL, IoPageTable.physOf(leaf, 0x7f0000_1abcL));
        assertEquals(PROT_READ, IoPageTable.protOf(leaf));
        assertEquals(K4, IoPageTable.leafSize(leaf));
        assertEquals(0, pt.walk(0x7f0000_0fffL));
        assertEquals(0, pt.walk(0x7f0000_2000L));
        assertEquals(K4, pt.mappedBytes());
    }

    @Test
    void alignedRangesUseBlocksAndTheRestPages() {
        IoPageTable pt = new IoPageTable();
        long iova = 0x4000_0000L;
        long phys = 0x1_0000_0000L;
        pt.map(iova, phys, 2 * M2 + 2 * K4, RW);
        assertEquals(M2, IoPageTable.leafSize(pt.walk(iova)));
        assertEquals(phys + 0x12345, IoPageTable.physOf(pt.walk(iova + 0x12345), iova + 0x12345));
        assertEquals(M2, IoPageTable.leafSize(pt.walk(iova + M2 + 5)));
        assertEquals(phys + M2 + 0x1fffff, IoPageTable.physOf(pt.walk(iova + M2 + 0x1fffff), iova + M2 + 0x1fffff));
        assertEquals(K4, IoPageTable.leafSize(pt.walk(iova + 2 * M2 + K4)));
        assertEquals(0, pt.walk(iova + 2 * M2 + 2 * K4));

        long misaligned = 0x8000_0000L;
        pt.map(misaligned, phys + 4 * M2 + K4, M2, PROT_WRITE);
        assertEquals(K4, IoPageTable.leafSize(pt.walk(misaligned)), "phys not 2 MiB-aligned: pages only");
        assertEquals(phys + 4 * M2 + K4 + 0x1ff000, IoPageTable.physOf(pt.walk(misaligned + 0x1ff000), misaligned + 0x1ff000));
        assertEquals(3 * M2 + 2 * K4, pt.mappedBytes());
    }

    @Test
    void permissionBitsArePerLeaf() {
        IoPageTable pt = new IoPageTable();
        pt.map(0x1000, 0x10000, K4, PROT_READ);
        pt.map(0x2000, 0x20000, K4, PROT_WRITE);
        pt.map(0x3000, 0x30000, K4, RW);
        assertEquals(PROT_READ, IoPageTable.protOf(pt.walk(0x1000)));
        assertEquals(PROT_WRITE, IoPageTable.protOf(pt.walk(0x2000)));
        assertEquals(RW, IoPageTable.protOf(pt.walk(0x3000)));
        assertErrno(Errno.EINVAL, "0x0", () -> pt.map(0x4000, 0x40000, K4, 0));
        assertErrno(Errno.EINVAL, "0x4", () -> pt.map(0x4000, 0x40000, K4, 4));
        assertEquals(0, pt.walk(0x4000));
        assertErrno(Errno.EINVAL, "0x0", () -> IoPageTable.protOf(0));
    }

    @Test
    void badArgumentsAreRejectedWithTheValue() {
        IoPageTable pt = new IoPageTable();
        assertErrno(Errno.EINVAL, "0x1001", () -> pt.map(0x1001, 0, K4, RW));
        assertErrno(Errno.EINVAL, "0x2200", () -> pt.map(0x1000, 0x2200, K4, RW));
        assertErrno(Errno.EINVAL, "0x800", () -> pt.map(0x1000, 0x2000, 0x800, RW));
        assertErrno(Errno.EINVAL, "0x0", () -> pt.map(0x1000, 0x2000, 0, RW));
        assertErrno(Errno.ERANGE, "0xfffffffff000", () -> pt.map(0xffff_ffff_f000L, 0, 2 * K4, RW));
        assertErrno(Errno.ERANGE, "0x1000000000000", () -> pt.map(1L << 48, 0, K4, RW));
        assertErrno(Errno.ERANGE, "0x10000000000000", () -> pt.map(0x1000, 1L << 52, K4, RW));
        assertErrno(Errno.ERANGE, "0xfffffffffffff000", () -> pt.map(-K4, 0, K4, RW));
        assertErrno(Errno.EINVAL, "0x1800", () -> pt.unmap(0x1800, K4));
        assertErrno(Errno.ERANGE, "0x1000000000000", () -> pt.walk(1L << 48));
        pt.map(0xffff_ffff_f000L, 0x5000, K4, RW);
        assertEquals(0x5000, IoPageTable.physOf(pt.walk(0xffff_ffff_ffffL), 0xffff_ffff_f000L));
        assertEquals(K4, pt.mappedBytes());
    }

    @Test
    void overlappingMapIsEexistAndChangesNothing() {
        IoPageTable pt = new IoPageTable();
        long base = 0x20_0000_0000L;
        pt.map(base + M2 + 5 * K4, 0x9000, 2 * K4, PROT_READ);
        pt.map(base + 4 * M2, 0x4000_0000L, M2, RW);
        List<Run> before = listing(pt);
        long tables = pt.tableCount();

        assertErrno(Errno.EEXIST, "0x" + Long.toHexString(base + M2 + 5 * K4),
                () -> pt.map(base + M2, 0x8000_0000L, M2, RW)); // block over a region holding pages
        assertErrno(Errno.EEXIST, "0x" + Long.toHexString(base + M2 + 6 * K4),
                () -> pt.map(base + M2 + 6 * K4, 0x7000, 4 * K4, RW));
        assertErrno(Errno.EEXIST, "0x" + Long.toHexString(base + 4 * M2 + 7 * K4),
                () -> pt.map(base + 4 * M2 + 7 * K4, 0x7000, K4, RW)); // page inside a block
        assertErrno(Errno.EEXIST, "0x" + Long.toHexString(base + 4 * M2),
                () -> pt.map(base + 2 * M2, 0x1_0000_0000L, 8 * M2, RW)); // long range, a middle block overlaps

        assertEquals(before, listing(pt));
        assertEquals(2 * K4 + M2, pt.mappedBytes());
        assertEquals(tables, pt.tableCount(), "no table was hooked in by a failed map");
        assertEquals(0, pt.walk(base));
        assertEquals(0, pt.walk(base + M2 + 4 * K4));
    }

    @Test
    void partialUnmapSplitsABlockAndKeepsTheRest() {
        IoPageTable pt = new IoPageTable();
        long iova = 0x6000_0000L;
        long phys = 0x2_0000_0000L;
        pt.map(iova, phys, M2, PROT_WRITE);
        assertEquals(K4, pt.unmap(iova + K4, K4));
        assertEquals(0, pt.walk(iova + K4));
        long first = pt.walk(iova);
        assertEquals(K4, IoPageTable.leafSize(first), "the block became pages");
        assertEquals(PROT_WRITE, IoPageTable.protOf(first));
        assertEquals(phys + 0x1fffff, IoPageTable.physOf(pt.walk(iova + 0x1fffff), iova + 0x1fffff));
        assertEquals(M2 - K4, pt.mappedBytes());
        assertEquals(List.of(new Run(iova, phys, K4, PROT_WRITE),
                new Run(iova + 2 * K4, phys + 2 * K4, M2 - 2 * K4, PROT_WRITE)), listing(pt));
        assertEquals(M2 - K4, pt.unmap(iova, M2));
        assertEquals(0, pt.mappedBytes());
        assertEquals(1, pt.tableCount(), "emptied tables are reclaimed up to the root");
    }

    @Test
    void unmapReturnsOnlyTheBytesThatWereMapped() {
        IoPageTable pt = new IoPageTable();
        pt.map(0x10000, 0x100000, K4, RW);
        pt.map(0x12000, 0x200000, 2 * K4, RW);
        pt.map(0x40_0000L, 0x40_0000L, M2, RW);
        assertEquals(0, pt.unmap(0x1000, 4 * K4));
        assertEquals(3 * K4, pt.unmap(0x0, 0x20000));
        assertEquals(0, pt.walk(0x12000));
        assertEquals(M2, pt.unmap(0x20_0000L, 3 * M2));
        assertEquals(0, pt.unmap(0x20_0000L, 3 * M2));
        assertEquals(0, pt.mappedBytes());
        assertEquals(1, pt.tableCount());
    }

    @Test
    void listingMergesContiguousLeavesWithEqualPermissions() {
        IoPageTable pt = new IoPageTable();
        long iova = 0x3000_0000L;
        pt.map(iova - 2 * K4, 0x5000_0000L - 2 * K4, 2 * K4, RW); // pages running into ...
        pt.map(iova, 0x5000_0000L, M2, RW); // ... a block, phys contiguous
        pt.map(iova + M2, 0x5000_0000L + M2, K4, RW); // and on, mapped separately
        pt.map(iova + M2 + K4, 0x5000_0000L + M2 + K4, K4, PROT_READ); // other permission
        pt.map(iova + M2 + 2 * K4, 0x7000_0000L, K4, PROT_READ); // phys jumps
        pt.map(iova + M2 + 4 * K4, 0x7000_2000L, K4, PROT_READ); // IOVA hole
        assertEquals(List.of(
                new Run(iova - 2 * K4, 0x5000_0000L - 2 * K4, 2 * K4 + M2 + K4, RW),
                new Run(iova + M2 + K4, 0x5000_0000L + M2 + K4, K4, PROT_READ),
                new Run(iova + M2 + 2 * K4, 0x7000_0000L, K4, PROT_READ),
                new Run(iova + M2 + 4 * K4, 0x7000_2000L, K4, PROT_READ)), listing(pt));
    }

    @Test
    void walkOfUnmappedAddressesIsZero() {
        IoPageTable pt = new IoPageTable();
        assertEquals(0, pt.walk(0));
        assertEquals(0, pt.walk(0xffff_ffff_ffffL));
        pt.map(0x1234_5000L, 0x1000, K4, RW);
        assertEquals(0, pt.walk(0x1234_4fffL));
        assertEquals(0, pt.walk(0x1234_6000L));
        pt.unmap(0x1234_5000L, K4);
        assertEquals(0, pt.walk(0x1234_5000L));
        pt.map(0x1234_5000L, 0x3000, K4, RW);
        assertEquals(0x3000, IoPageTable.physOf(pt.walk(0x1234_5000L), 0x1234_5000L), "a parked table is reused cleanly");
    }

    @Test
    void randomisedAgainstAPageModel() {
        IoPageTable pt = new IoPageTable();
        Map<Long, Long> model = new HashMap<>(); // page IOVA -> phys | prot
        Random rnd = new Random(7);
        long window = 64 * M2; // small window so ranges collide
        for (int step = 0; step < 4_000; step++) {
            long iova = (rnd.nextLong(window / K4)) * K4;
            long size = rnd.nextBoolean() ? K4 * (1 + rnd.nextInt(16)) : M2 * (1 + rnd.nextInt(3)) + K4 * rnd.nextInt(3);
            if (rnd.nextBoolean()) {
                iova &= -M2;
            }
            if (iova + size > window) {
                continue;
            }
            if (rnd.nextInt(3) > 0) {
                long phys = rnd.nextBoolean() ? iova + (1L << 32) : (rnd.nextLong(1 << 20)) * K4;
                int prot = 1 + rnd.nextInt(3);
                boolean free = true;
                for (long p = iova; p < iova + size && free; p += K4) {
                    free = !model.containsKey(p);
                }
                long before = pt.mappedBytes();
                try {
                    pt.map(iova, phys, size, prot);
                    assertTrue(free, "map succeeded over a mapped page at step " + step);
                    for (long p = 0; p < size; p += K4) {
                        model.put(iova + p, (phys + p) | prot);
                    }
                } catch (ErrnoException e) {
                    assertEquals(Errno.EEXIST, e.errno());
                    assertTrue(!free, "EEXIST on a free range at step " + step);
                    assertEquals(before, pt.mappedBytes());
                }
            } else {
                long expected = 0;
                for (long p = iova; p < iova + size; p += K4) {
                    if (model.remove(p) != null) {
                        expected += K4;
                    }
                }
                assertEquals(expected, pt.unmap(iova, size), "step " + step);
            }
            assertEquals(model.size() * K4, pt.mappedBytes());
            for (int probe = 0; probe < 8; probe++) {
                long a = rnd.nextLong(window);
                Long m = model.get(a & -K4);
                long leaf = pt.walk(a);
                if (m == null) {
                    assertEquals(0, leaf, "step " + step + " probe 0x" + Long.toHexString(a));
                } else {
                    assertEquals((m & -K4) + (a & (K4 - 1)), IoPageTable.physOf(leaf, a));
                    assertEquals(m & 3, IoPageTable.protOf(leaf));
                }
            }
        }
        long total = 0;
        for (Run r : listing(pt)) {
            total += r.size();
        }
        assertEquals(model.size() * K4, total);
        pt.unmap(0, window);
        assertEquals(1, pt.tableCount());
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void lockFreeWalksStayCorrectWhileOtherRangesChange() throws Exception {
        IoPageTable pt = new IoPageTable();
        long stable = 0x4000_0000L;
        // stable pages share every table with the churned ones: same 2 MiB region, same 1 GiB, same 512 GiB
        pt.map(stable, 0x9_0000_0000L, 16 * K4, PROT_READ);
        int blocks = 256;
        pt.map(stable + 2 * M2, 0xa_0000_0000L, blocks * M2, PROT_WRITE);
        AtomicBoolean stop = new AtomicBoolean();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicLong walks = new AtomicLong();
        Thread reader = new Thread(() -> {
            Random rnd = new Random(1);
            try {
                while (!stop.get()) {
                    long off = rnd.nextLong(16 * K4);
                    long leaf = pt.walk(stable + off);
                    if (IoPageTable.physOf(leaf, stable + off) != 0x9_0000_0000L + off
                            || IoPageTable.protOf(leaf) != PROT_READ) {
                        throw new AssertionError("wrong translation of 0x" + Long.toHexString(stable + off));
                    }
                    // upper half of a block that is being split or was split
                    long boff = rnd.nextInt(blocks) * M2 + M2 / 2 + rnd.nextLong(M2 / 2);
                    long bleaf = pt.walk(stable + 2 * M2 + boff);
                    if (IoPageTable.physOf(bleaf, stable + 2 * M2 + boff) != 0xa_0000_0000L + boff) {
                        throw new AssertionError("wrong translation in split block at +0x" + Long.toHexString(boff));
                    }
                    walks.incrementAndGet();
                }
            } catch (Throwable t) {
                failure.set(t);
            }
        }, "walker");
        reader.start();
        int rounds = 0;
        try {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(1500);
            while (System.nanoTime() < deadline && failure.get() == null) {
                pt.map(stable + 16 * K4, 0x1000, 32 * K4, RW);
                pt.map(stable + M2, 0x4000_0000L, M2, RW);
                pt.map(stable + 512 * M2, 0x4000_0000L, M2, RW);
                assertEquals(32 * K4, pt.unmap(stable + 16 * K4, 32 * K4));
                assertEquals(M2, pt.unmap(stable + M2, M2));
                assertEquals(M2, pt.unmap(stable + 512 * M2, M2));
                if (rounds < blocks) {
                    assertEquals(M2 / 4, pt.unmap(stable + 2 * M2 + rounds * M2, M2 / 4)); // split, keep the rest
                }
                rounds++;
            }
        } finally {
            stop.set(true);
            reader.join(10_000);
        }
        assertTrue(rounds > 10, "only " + rounds + " rounds");
        assertTrue(!reader.isAlive(), "walker did not stop");
        if (failure.get() != null) {
            throw new AssertionError(failure.get());
        }
        assertTrue(walks.get() > 0);
    }
}
