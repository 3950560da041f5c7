package dev.dmaplane.iommu.impl;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * One 512-entry table of an I/O page table (a page of {@code arm_lpae_iopte} / VT-d {@code dma_pte}). Entries are
 * read by lock-free walkers with acquire loads and written by the (single, locked) writer with release stores, so a
 * walker that sees an entry also sees everything the writer did before storing it.
 *
 * <p>A directory table keeps its child tables in {@link #children}, in step with a table marker in the entry: the
 * writer stores the child before the marker and clears the marker before the child.
 *
 * <p>A table is bound for life to one {@link #key}: the level and the IOVA region it translates. When it empties,
 * the owner may park it and later hang it back in the same place, but never anywhere else, so a walker still holding
 * it after it was unhooked can only read entries of its own address (zeros while parked).
 */
public final class PtNode {
    /** Entries per table. */
    public static final int ENTRIES = 512;

    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle NODES = MethodHandles.arrayElementVarHandle(PtNode[].class);

    private final long[] entries = new long[ENTRIES];
    private final PtNode[] children;
    private final long key;
    /** Non-zero entries; only the writer touches it. */
    private int used;

    /**
     * @param key       level and region this table translates, see {@link #keyOf}
     * @param directory whether entries may point to lower tables
     */
    public PtNode(long key, boolean directory) {
        this.key = key;
        this.children = directory ? new PtNode[ENTRIES] : null;
    }

    /** The identity of the table at {@code level} (1 .. 3) that translates {@code iova}, whose entries each span {@code 2^shift}. */
    public static long keyOf(int level, long iova, int shift) {
        return ((long) level << 56) | (iova >>> (shift + 9));
    }

    public long key() {
        return key;
    }

    public boolean isDirectory() {
        return children != null;
    }

    /** Walker read: the entry as of some point no earlier than the entry's last release store seen. */
    public long entryAcquire(int index) {
        return (long) LONGS.getAcquire(entries, index);
    }

    /** Walker read of a child table; {@code null} once it was unhooked. */
    public PtNode childAcquire(int index) {
        return (PtNode) NODES.getAcquire(children, index);
    }

    /** Writer read (under the writer lock, so plain). */
    public long entry(int index) {
        return entries[index];
    }

    /** Writer read of a child table. */
    public PtNode child(int index) {
        return children[index];
    }

    /** Writer store of a leaf or of 0, published to walkers; keeps {@link #used} in step. */
    public void setEntry(int index, long value) {
        long old = entries[index];
        used += (old == 0 ? 0 : -1) + (value == 0 ? 0 : 1);
        LONGS.setRelease(entries, index, value);
    }

    /**
     * Walker update of a leaf, as the hardware's atomic dirty-bit write: replaces {@code expected} by {@code value},
     * both non-zero, so {@link #used} stays; false if the entry changed meanwhile.
     */
    public boolean compareAndSetLeaf(int index, long expected, long value) {
        return LONGS.compareAndSet(entries, index, expected, value);
    }

    /** Writer clear of {@code bits} of a leaf, atomic against walkers setting them; returns the entry before. */
    public long clearBits(int index, long bits) {
        return (long) LONGS.getAndBitwiseAnd(entries, index, ~bits);
    }

    /**
     * Hangs {@code child} under {@code index} in place of the leaf {@code expected} (a block being split), unless a
     * walker changed the leaf meanwhile (set its dirty bit): then nothing is hooked and the caller retries.
     */
    public boolean hookReplacing(int index, PtNode child, long marker, long expected) {
        NODES.setRelease(children, index, child);
        return LONGS.compareAndSet(entries, index, expected, marker);
    }

    /** Writer store of a fresh, not yet reachable table: plain, published later by {@link #hook}. */
    public void fill(int index, long value) {
        if (entries[index] == 0 && value != 0) {
            used++;
        }
        entries[index] = value;
    }

    /** Hangs {@code child} under {@code index}: the child first, then the {@code marker} entry that leads to it. */
    public void hook(int index, PtNode child, long marker) {
        NODES.setRelease(children, index, child);
        setEntry(index, marker);
    }

    /** Unhooks the child under {@code index}: the marker first, so no new walker goes down, then the child link. */
    public void unhook(int index) {
        setEntry(index, 0);
        NODES.setRelease(children, index, null);
    }

    /** Number of non-zero entries. */
    public int used() {
        return used;
    }
}
