package dev.dmaplane.pci.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.MachineSpec.BarSpec;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Places BARs and bridge windows in the machine's MMIO windows, as the PCI core's resource sizing and
 * assignment do ({@code pbus_size_mem}, {@code __pci_bus_assign_resources}): bottom-up, each bridge's window
 * is sized to hold its children's BARs and windows, largest alignment first, rounded to the 1 MiB bridge
 * window granule; top-down, windows and BARs get addresses naturally aligned to their size.
 * <p>
 * 64-bit prefetchable BARs go to the 64-bit window and through bridges' prefetchable windows; every other BAR
 * goes to the window below 4 GiB and through bridges' non-prefetchable windows, whose registers are 32-bit.
 * <p>
 * A BAR's size is its alignment, so sizes must have passed {@link BarRules} (powers of two that fit their window),
 * as {@link BusPlan} ensures before a topology is planned.
 */
public final class MmioPlan {
    /** Bridge memory windows are programmed in 1 MiB units. */
    public static final long WINDOW_GRANULE = 1L << 20;

    private MmioPlan() {
    }

    /** An inclusive address range. */
    public record Range(long base, long limit) {
        public long size() {
            return limit - base + 1;
        }
    }

    /** Where one function's BARs and, for a bridge, its windows were placed. */
    public record Layout(Map<Integer, Long> bars, Optional<Range> memoryWindow, Optional<Range> prefetchableWindow) {
    }

    /**
     * The whole plan: each function's layout, and each host bridge's apertures, the ranges of the MMIO windows
     * given to its hierarchy (what firmware reports as the host bridge's windows, {@code bridge->windows}).
     */
    public record Assignment(Map<BusPlan.Node, Layout> functions, Map<BusPlan.Host, List<Range>> hostWindows) {
    }

    private static final class Item {
        final long size;
        final long align;
        final BusPlan.Node node;
        final int barIndex;
        final Region sub;
        long offset;

        Item(long size, long align, BusPlan.Node node, int barIndex, Region sub) {
            this.size = size;
            this.align = align;
            this.node = node;
            this.barIndex = barIndex;
            this.sub = sub;
        }
    }

    private record Region(List<Item> items, long size, long align) {
    }

    private final Map<BusPlan.Node, Map<Integer, Long>> bars = new IdentityHashMap<>();
    private final Map<BusPlan.Node, Range> memWindows = new IdentityHashMap<>();
    private final Map<BusPlan.Node, Range> prefWindows = new IdentityHashMap<>();
    private final Map<BusPlan.Host, List<Range>> hostWindows = new IdentityHashMap<>();

    /** Whether {@code bar} belongs in the 64-bit prefetchable window. */
    public static boolean isHigh(BarSpec bar) {
        return bar.is64Bit() && bar.prefetchable();
    }

    /**
     * Assigns every BAR and bridge window of {@code hosts}.
     *
     * @throws ErrnoException {@code ENOSPC} naming the host bridge whose BARs do not fit a window
     */
    public static Assignment assign(List<BusPlan.Host> hosts, long base64, long limit64, long base32, long limit32) {
        MmioPlan p = new MmioPlan();
        long cursor64 = base64;
        long cursor32 = base32;
        for (BusPlan.Host h : hosts) {
            p.hostWindows.put(h, new ArrayList<>(2));
            cursor32 = p.place(h, false, cursor32, limit32);
            cursor64 = p.place(h, true, cursor64, limit64);
        }
        Map<BusPlan.Node, Layout> out = new IdentityHashMap<>();
        Map<BusPlan.Host, List<Range>> windows = new IdentityHashMap<>();
        for (BusPlan.Host h : hosts) {
            p.collect(h.children(), out);
            windows.put(h, List.copyOf(p.hostWindows.get(h)));
        }
        return new Assignment(out, windows);
    }

    private long place(BusPlan.Host h, boolean high, long cursor, long limit) {
        Region r;
        long base;
        try {
            r = size(h.children(), high);
            base = alignUp(cursor, r.align);
        } catch (ArithmeticException e) {
            throw SpecException.at(Errno.ENOSPC, h.path(),
                    h.path() + ": the BARs below this host bridge overflow the address space");
        }
        if (r.size == 0) {
            return cursor;
        }
        if (base > limit || r.size > limit - base) {
            throw SpecException.at(Errno.ENOSPC, h.path(), String.format(
                    "%s: the %s MMIO window, next free %#x, limit %#x, cannot hold %#x bytes aligned to %#x",
                    h.path(), high ? "64-bit prefetchable" : "32-bit", cursor, limit, r.size, r.align));
        }
        assign(r, base, high);
        hostWindows.get(h).add(new Range(base, base + r.size - 1));
        return base + r.size;
    }

    private Region size(List<BusPlan.Node> nodes, boolean high) {
        List<Item> items = new ArrayList<>();
        for (BusPlan.Node n : nodes) {
            for (BarSpec b : n.spec().bars()) {
                if (isHigh(b) == high) {
                    items.add(new Item(b.size(), b.size(), n, b.index(), null));
                }
            }
            if (n.isBridge()) {
                Region sub = size(n.children(), high);
                if (sub.size > 0) {
                    items.add(new Item(sub.size, sub.align, n, -1, sub));
                }
            }
        }
        items.sort(Comparator.comparingLong((Item i) -> i.align).reversed());
        long off = 0;
        long align = WINDOW_GRANULE;
        for (Item it : items) {
            off = alignUp(off, it.align);
            it.offset = off;
            off = Math.addExact(off, it.size);
            align = Math.max(align, it.align);
        }
        return new Region(items, off == 0 ? 0 : alignUp(off, WINDOW_GRANULE), align);
    }

    private void assign(Region r, long base, boolean high) {
        for (Item it : r.items) {
            long addr = base + it.offset;
            if (it.sub == null) {
                bars.computeIfAbsent(it.node, k -> new LinkedHashMap<>()).put(it.barIndex, addr);
            } else {
                (high ? prefWindows : memWindows).put(it.node, new Range(addr, addr + it.sub.size - 1));
                assign(it.sub, addr, high);
            }
        }
    }

    private void collect(List<BusPlan.Node> nodes, Map<BusPlan.Node, Layout> out) {
        for (BusPlan.Node n : nodes) {
            out.put(n, new Layout(Map.copyOf(bars.getOrDefault(n, Map.of())), Optional.ofNullable(memWindows.get(n)),
                    Optional.ofNullable(prefWindows.get(n))));
            collect(n.children(), out);
        }
    }

    /** {@code v} rounded up to {@code align}, a power of two; {@link ArithmeticException} past the address space. */
    private static long alignUp(long v, long align) {
        return Math.addExact(v, align - 1) & -align;
    }
}
