package dev.dmaplane.iommu;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.impl.PtNode;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;

/**
 * A four-level I/O page table translating a 48-bit IOVA space ({@code io-pgtable-arm} LPAE stage 1 with a 4 KiB
 * granule, or the VT-d second-level table): 512-entry tables, 4 KiB page leaves at the last level and 2 MiB block
 * leaves one level up.
 *
 * <p>Concurrency: {@link #map}, {@link #unmap}, {@link #mappedBytes} and {@link #forEachMapping} serialise on one
 * writer monitor. {@link #walk}, the device's lookup, takes no lock: entries are published with release stores and
 * read with acquire loads ({@link PtNode}), a 2 MiB block is split by building the whole 4 KiB table before one store
 * replaces the block entry, and a table that empties is unhooked and kept only for being hung back at the same
 * place. A walk of an address whose mapping is not changing at that moment therefore always gets the right answer,
 * whatever happens to other ranges; a walk racing with a change of its own address sees the old or the new state.
 *
 * <p>Table reclaim: when {@link #unmap} empties a table it is unhooked from its parent at once (so emptied parents
 * go too). Unhooked tables go to a small direct-mapped parking area (64 tables at most) keyed by their place, from
 * which a later {@link #map} of the same region takes them back instead of allocating; a parked table pushed out by
 * another one is left to the garbage collector, which, like RCU, frees it only once no walker can still hold it.
 *
 * <p>Dirty bits: {@link #markDirty} sets a leaf's dirty bit with an atomic update, as the walker of a table with
 * dirty tracking does on a write translation; {@link #readDirty} reads (and may clear) them. A block split keeps
 * its dirty bit in every page, also when a walker sets it while the split is under way.
 *
 * <p>Errors: misaligned addresses or sizes, a non-positive size and bad permissions are {@code EINVAL}; an IOVA range
 * reaching past 2^48 or a physical range past 2^52 (the LPAE output size) is {@code ERANGE}; mapping over any mapped
 * page is {@code EEXIST}. Every failure leaves the table exactly as it was.
 */
public final class IoPageTable {
    /** Device may read. */
    public static final int PROT_READ = 1;
    /** Device may write. */
    public static final int PROT_WRITE = 2;
    /** Bits of IOVA translated. */
    public static final int IOVA_BITS = 48;
    /** Bits of physical address a leaf can hold. */
    public static final int PHYS_BITS = 52;
    /** Size of a page leaf. */
    public static final long PAGE_SIZE = 1L << 12;
    /** Size of a block leaf. */
    public static final long BLOCK_SIZE = 1L << 21;

    private static final int LEVELS = 4;
    private static final int LEAF_LEVEL = 3;
    private static final int BLOCK_LEVEL = 2;
    private static final long VALID = 1;
    private static final int PROT_SHIFT = 1;
    private static final long BLOCK = 1 << 3;
    private static final long TABLE = 1 << 4;
    /** Written through since the bit was last cleared: the dirty bit of io-pgtable-arm's DBM or VT-d's A/D bits. */
    private static final long DIRTY = 1 << 5;
    private static final long PHYS_MASK = ((1L << PHYS_BITS) - 1) & -PAGE_SIZE;
    private static final int PARKING_SLOTS = 64;

    private final Object writer = new Object();
    private final PtNode root = new PtNode(0, true);
    private final PtNode[] parked = new PtNode[PARKING_SLOTS];
    private long mappedBytes;
    private long tables = 1;

    /** Bits of IOVA below the index of {@code level}: 39, 30, 21, 12. */
    private static int shift(int level) {
        return 39 - 9 * level;
    }

    private static int index(long iova, int level) {
        return (int) (iova >>> shift(level)) & (PtNode.ENTRIES - 1);
    }

    /**
     * The physical address of byte {@code iova} under {@code leaf}, a value {@link #walk} returned for an address in
     * the same page or block.
     */
    public static long physOf(long leaf, long iova) {
        return (checkLeaf(leaf) & PHYS_MASK) | (iova & (leafSize(leaf) - 1));
    }

    /** The permissions of {@code leaf}: {@link #PROT_READ} and/or {@link #PROT_WRITE}. */
    public static int protOf(long leaf) {
        return (int) (checkLeaf(leaf) >>> PROT_SHIFT) & (PROT_READ | PROT_WRITE);
    }

    /** The bytes {@code leaf} translates: {@link #PAGE_SIZE} or {@link #BLOCK_SIZE}. */
    public static long leafSize(long leaf) {
        return (checkLeaf(leaf) & BLOCK) != 0 ? BLOCK_SIZE : PAGE_SIZE;
    }

    /** Whether a device wrote through {@code leaf} since its dirty bit was last cleared. */
    public static boolean dirtyOf(long leaf) {
        return (checkLeaf(leaf) & DIRTY) != 0;
    }

    private static long checkLeaf(long leaf) {
        if ((leaf & VALID) == 0 || (leaf & TABLE) != 0) {
            throw new ErrnoException(Errno.EINVAL, "0x" + Long.toHexString(leaf) + " is not a leaf entry");
        }
        return leaf;
    }

    private static long leaf(long phys, int prot, boolean block) {
        return phys | ((long) prot << PROT_SHIFT) | (block ? BLOCK : 0) | VALID;
    }

    /**
     * Translates {@code iova} as the IOMMU's table walker does; lock-free.
     *
     * @return the leaf entry (decode with {@link #physOf}, {@link #protOf}, {@link #leafSize}), or 0 if unmapped
     * @throws ErrnoException {@code ERANGE} if {@code iova} is negative or not below 2^48
     */
    public long walk(long iova) {
        if ((iova >>> IOVA_BITS) != 0) {
            throw new ErrnoException(Errno.ERANGE, "IOVA 0x" + Long.toHexString(iova) + " is outside the 48-bit space");
        }
        PtNode t = root;
        for (int level = 0; level < LEVELS; level++) {
            int i = index(iova, level);
            long e = t.entryAcquire(i);
            if ((e & TABLE) == 0) {
                return e;
            }
            t = t.childAcquire(i);
            if (t == null) {
                return 0; // unhooked under us: it was empty then
            }
        }
        throw new IllegalStateException("table marker at the leaf level for IOVA 0x" + Long.toHexString(iova));
    }

    /**
     * The table walker's dirty-bit update on a write translation (the hardware's atomic update of the leaf, as
     * {@code io-pgtable-arm} with DBM or VT-d second-level A/D bits do it); lock-free, like {@link #walk}.
     *
     * @return the leaf that maps {@code iova}, with its dirty bit set, or 0 if {@code iova} is not mapped
     * @throws ErrnoException {@code ERANGE} if {@code iova} is negative or not below 2^48
     */
    public long markDirty(long iova) {
        if ((iova >>> IOVA_BITS) != 0) {
            throw new ErrnoException(Errno.ERANGE, "IOVA 0x" + Long.toHexString(iova) + " is outside the 48-bit space");
        }
        retry:
        while (true) {
            PtNode t = root;
            for (int level = 0; level < LEVELS; level++) {
                int i = index(iova, level);
                long e = t.entryAcquire(i);
                if ((e & TABLE) == 0) {
                    if (e == 0 || (e & DIRTY) != 0) {
                        return e;
                    }
                    if (t.compareAndSetLeaf(i, e, e | DIRTY)) {
                        return e | DIRTY;
                    }
                    continue retry; // unmapped, split or dirtied meanwhile: walk again
                }
                t = t.childAcquire(i);
                if (t == null) {
                    return 0;
                }
            }
            throw new IllegalStateException("table marker at the leaf level for IOVA 0x" + Long.toHexString(iova));
        }
    }

    /**
     * Reads the dirty bits of the leaves in {@code [iova, iova + size)} into a bitmap of {@code pageSize} pages, bit
     * {@code n} for the page at {@code iova + n * pageSize}, as {@code iommu_dirty_bitmap_record} records them: a
     * dirty leaf sets the bit of every page it overlaps (a 2 MiB block all of its pages). With {@code clear} the bits
     * are cleared as they are read ({@code read_and_clear_dirty}), atomically against walkers setting them, so no
     * write is lost between the read and the clear; the caller must then flush translation caches.
     *
     * @throws ErrnoException {@code EINVAL} or {@code ERANGE} for a bad range (see the class comment)
     */
    public BitSet readDirty(long iova, long size, long pageSize, boolean clear) {
        checkRange(iova, size);
        BitSet bits = new BitSet();
        synchronized (writer) {
            readDirty(root, 0, iova, iova + size, clear, (leafIova, leafSize) -> {
                long from = Math.max(leafIova, iova) - iova;
                long to = Math.min(leafIova + leafSize, iova + size) - iova;
                bits.set((int) (from / pageSize), (int) ((to - 1) / pageSize) + 1);
            });
        }
        return bits;
    }

    /** A dirty leaf found by {@link #readDirty}. */
    private interface DirtyLeaf {
        void found(long iova, long size);
    }

    private static void readDirty(PtNode t, int level, long from, long to, boolean clear, DirtyLeaf out) {
        long span = 1L << shift(level);
        long addr = from;
        while (addr < to) {
            long regionStart = addr & -span;
            long end = Math.min(to, regionStart + span);
            int i = index(addr, level);
            long e = t.entryAcquire(i);
            if ((e & TABLE) != 0) {
                readDirty(t.child(i), level + 1, addr, end, clear, out);
            } else if (e != 0 && (e & DIRTY) != 0) {
                if (!clear || (t.clearBits(i, DIRTY) & DIRTY) != 0) {
                    out.found(regionStart, span);
                }
            }
            addr = end;
        }
    }

    /**
     * Maps {@code [iova, iova + size)} to {@code [phys, phys + size)}, using 2 MiB blocks wherever the IOVA and the
     * physical address are both 2 MiB-aligned and at least 2 MiB remain, 4 KiB pages elsewhere.
     *
     * @param prot {@link #PROT_READ}, {@link #PROT_WRITE} or both
     * @throws ErrnoException {@code EINVAL}, {@code ERANGE} or {@code EEXIST} (see the class comment); nothing
     *                        is mapped then
     */
    public void map(long iova, long phys, long size, int prot) {
        checkRange(iova, size);
        if ((phys & (PAGE_SIZE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, "physical address 0x" + Long.toHexString(phys) + " is not 4 KiB-aligned");
        }
        if (phys < 0 || phys > (1L << PHYS_BITS) - size) {
            throw new ErrnoException(Errno.ERANGE, "physical range 0x" + Long.toHexString(phys) + "+0x"
                    + Long.toHexString(size) + " does not fit in " + PHYS_BITS + " bits");
        }
        if (prot == 0 || (prot & ~(PROT_READ | PROT_WRITE)) != 0) {
            throw new ErrnoException(Errno.EINVAL, "protection 0x" + Integer.toHexString(prot)
                    + " must be PROT_READ, PROT_WRITE or both");
        }
        boolean block = ((iova | phys) & (BLOCK_SIZE - 1)) == 0 && size == BLOCK_SIZE;
        if (size == PAGE_SIZE || block) {
            synchronized (writer) {
                installOne(iova, block ? BLOCK_LEVEL : LEAF_LEVEL, leaf(phys, prot, block));
                mappedBytes += size;
            }
            return;
        }
        synchronized (writer) {
            long busy = firstMapped(root, 0, iova, iova + size);
            if (busy >= 0) {
                throw busy(busy, iova, size);
            }
            long end = iova + size;
            while (iova < end) {
                block = ((iova | phys) & (BLOCK_SIZE - 1)) == 0 && end - iova >= BLOCK_SIZE;
                installOne(iova, block ? BLOCK_LEVEL : LEAF_LEVEL, leaf(phys, prot, block));
                long step = block ? BLOCK_SIZE : PAGE_SIZE;
                iova += step;
                phys += step;
            }
            mappedBytes += size;
        }
    }

    private static void checkRange(long iova, long size) {
        if ((iova & (PAGE_SIZE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, "IOVA 0x" + Long.toHexString(iova) + " is not 4 KiB-aligned");
        }
        if (size <= 0 || (size & (PAGE_SIZE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, "size 0x" + Long.toHexString(size) + " is not a positive multiple of 4 KiB");
        }
        if (iova < 0 || iova > (1L << IOVA_BITS) - size) {
            throw new ErrnoException(Errno.ERANGE, "IOVA range 0x" + Long.toHexString(iova) + "+0x"
                    + Long.toHexString(size) + " does not fit in " + IOVA_BITS + " bits");
        }
    }

    /**
     * Maps the single leaf {@code iova} at {@code target} level in one walk, checking on the way down: below an empty
     * entry nothing can be mapped, so {@code EEXIST} can only be found before the first table is hooked in.
     */
    private void installOne(long iova, int target, long leaf) {
        PtNode t = root;
        for (int level = 0; level < target; level++) {
            int i = index(iova, level);
            long e = t.entry(i);
            if (e == 0) {
                PtNode child = takeTable(level + 1, iova);
                t.hook(i, child, TABLE);
                tables++;
                t = child;
            } else if ((e & TABLE) != 0) {
                t = t.child(i);
            } else {
                throw busy(iova, iova, 1L << shift(target)); // inside a block
            }
        }
        int i = index(iova, target);
        long e = t.entry(i);
        if (e != 0) {
            throw busy((e & TABLE) != 0 ? firstMapped(t.child(i), target + 1, iova, iova + BLOCK_SIZE) : iova,
                    iova, 1L << shift(target));
        }
        t.setEntry(i, leaf);
    }

    private static ErrnoException busy(long mapped, long iova, long size) {
        return new ErrnoException(Errno.EEXIST, "IOVA 0x" + Long.toHexString(mapped) + " is already mapped (mapping 0x"
                + Long.toHexString(iova) + "+0x" + Long.toHexString(size) + ")");
    }

    /** The first mapped IOVA in {@code [from, to)} below table {@code t}, or -1. */
    private static long firstMapped(PtNode t, int level, long from, long to) {
        long span = 1L << shift(level);
        for (long addr = from; addr < to; addr = (addr | (span - 1)) + 1) {
            long e = t.entry(index(addr, level));
            if ((e & TABLE) != 0) {
                long found = firstMapped(t.child(index(addr, level)), level + 1, addr, Math.min(to, (addr | (span - 1)) + 1));
                if (found >= 0) {
                    return found;
                }
            } else if (e != 0) {
                return addr;
            }
        }
        return -1;
    }

    /**
     * Unmaps every page of {@code [iova, iova + size)} that is mapped; holes are skipped. A 2 MiB block only partly
     * inside the range is first split into 4 KiB pages, so the rest of it stays mapped.
     *
     * @return the bytes that were mapped in the range and are not any more
     * @throws ErrnoException {@code EINVAL} or {@code ERANGE} for a bad range (nothing is unmapped)
     */
    public long unmap(long iova, long size) {
        checkRange(iova, size);
        synchronized (writer) {
            long bytes = unmapRange(root, 0, iova, iova + size);
            mappedBytes -= bytes;
            unmaps++; // after the entries are gone: a walker that sees the new count cannot see them
            return bytes;
        }
    }

    private volatile long unmaps;

    /** Unmaps so far: translations cached from walks made before a change of this value may be stale. */
    public long unmapCount() {
        return unmaps;
    }

    private long unmapRange(PtNode t, int level, long from, long to) {
        long span = 1L << shift(level);
        long bytes = 0;
        long addr = from;
        while (addr < to) {
            long regionStart = addr & -span;
            long regionEnd = regionStart + span;
            long end = Math.min(to, regionEnd);
            int i = index(addr, level);
            long e = t.entry(i);
            if ((e & TABLE) != 0) {
                PtNode child = t.child(i);
                bytes += unmapRange(child, level + 1, addr, end);
                if (child.used() == 0) {
                    t.unhook(i);
                    park(child);
                    tables--;
                }
            } else if (e != 0) {
                if (addr == regionStart && end == regionEnd) {
                    t.setEntry(i, 0);
                    bytes += span;
                } else {
                    bytes += unmapRange(split(t, i, e, level, regionStart), level + 1, addr, end);
                }
            }
            addr = end;
        }
        return bytes;
    }

    /**
     * Replaces block {@code e} under {@code t[i]} by a full table of pages with the same translation, dirty bit
     * included; a walker that dirties the block meanwhile makes it start over with the dirty block.
     */
    private PtNode split(PtNode t, int i, long e, int level, long regionStart) {
        PtNode pages = takeTable(level + 1, regionStart);
        long block = e;
        while (true) {
            long phys = block & PHYS_MASK;
            long dirty = block & DIRTY;
            int prot = protOf(block);
            for (int j = 0; j < PtNode.ENTRIES; j++) {
                pages.fill(j, leaf(phys + j * PAGE_SIZE, prot, false) | dirty);
            }
            if (t.hookReplacing(i, pages, TABLE, block)) {
                break;
            }
            block = t.entryAcquire(i); // the writer lock is ours: only the dirty bit can have changed
        }
        tables++;
        return pages;
    }

    private static int parkingSlot(long key) {
        long h = key * 0x9E3779B97F4A7C15L;
        return (int) (h >>> 58);
    }

    /** A table for {@code level} translating {@code iova}: the one parked for that place if any, else a new one. */
    private PtNode takeTable(int level, long iova) {
        long key = PtNode.keyOf(level, iova, shift(level));
        int slot = parkingSlot(key);
        PtNode t = parked[slot];
        if (t != null && t.key() == key) {
            parked[slot] = null;
            return t;
        }
        return new PtNode(key, level < LEAF_LEVEL);
    }

    private void park(PtNode t) {
        parked[parkingSlot(t.key())] = t;
    }

    /** Bytes currently mapped. */
    public long mappedBytes() {
        synchronized (writer) {
            return mappedBytes;
        }
    }

    /**
     * Tables currently in use, the root included (the IOMMU's share of {@code SecPageTables}); emptied tables are
     * not counted, parked or not.
     */
    public long tableCount() {
        synchronized (writer) {
            return tables;
        }
    }

    /**
     * Visits the mapped ranges in IOVA order, merging neighbours whose physical addresses continue and whose
     * permissions are equal. The listing is taken under the writer lock and delivered after it is released, so the
     * visitor may call back into this table.
     */
    public void forEachMapping(MappingVisitor visitor) {
        List<Run> runs = new ArrayList<>();
        synchronized (writer) {
            collect(root, 0, 0, runs);
        }
        for (Run r : runs) {
            visitor.mapping(r.iova(), r.phys(), r.size(), r.prot());
        }
    }

    /** One merged range of the debug listing. */
    private record Run(long iova, long phys, long size, int prot) {
        boolean continuedBy(long nextIova, long nextPhys, int nextProt) {
            return iova + size == nextIova && phys + size == nextPhys && prot == nextProt;
        }
    }

    private static void collect(PtNode t, int level, long base, List<Run> runs) {
        int sh = shift(level);
        for (int i = 0; i < PtNode.ENTRIES; i++) {
            long e = t.entry(i);
            long iova = base | ((long) i << sh);
            if ((e & TABLE) != 0) {
                collect(t.child(i), level + 1, iova, runs);
            } else if (e != 0) {
                long phys = e & PHYS_MASK;
                int prot = protOf(e);
                int last = runs.size() - 1;
                if (last >= 0 && runs.get(last).continuedBy(iova, phys, prot)) {
                    Run r = runs.get(last);
                    runs.set(last, new Run(r.iova(), r.phys(), r.size() + (1L << sh), prot));
                } else {
                    runs.add(new Run(iova, phys, 1L << sh, prot));
                }
            }
        }
    }

    @Override
    public String toString() {
        return "IoPageTable[" + mappedBytes() + " bytes mapped]";
    }
}
