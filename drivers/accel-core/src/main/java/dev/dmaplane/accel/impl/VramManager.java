package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.spi.VramInfo;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.genalloc.GenPool;
import dev.dmaplane.p2pdma.P2pAllocation;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.p2pdma.P2pMemory;
import dev.dmaplane.pci.Bar;

import java.util.ArrayList;
import java.util.List;

/**
 * TTM's VRAM manager of one device ({@code amdgpu_vram_mgr.c}, without the buddy allocator): the CPU-visible
 * window is the GPU's own p2pmem (the BAR's first {@code visibleSize} bytes added to p2pdma's pool, unpublished),
 * VRAM beyond it a second range of the same allocator ({@link GenPool}). An allocation that need not be visible
 * goes beyond the window first, keeping the window for objects the CPU or peers touch (amdgpu allocates
 * {@code NO_CPU_ACCESS} objects top-down for the same reason). The driver's {@link VramInfo#reserved()} ranges are
 * never added to either, so they are never handed out ({@code amdgpu_vram_mgr_reserve_range}).
 */
final class VramManager {
    /** A VRAM range: its offset, its size, and its p2pmem allocation when it lies in the window. */
    record Range(long offset, long size, P2pAllocation window) {
    }

    private final VramInfo info;
    private final P2pMemory window;
    private final GenPool beyond = new GenPool();

    VramManager(P2pDma p2p, VramInfo info) {
        this.info = info;
        Bar bar = info.function().bar(info.bar()).orElseThrow(() -> new ErrnoException(Errno.EINVAL,
                info.function().bdf() + " has no BAR " + info.bar() + " for its VRAM"));
        ErrnoException.check(bar.backing() instanceof Bar.Memory, Errno.EINVAL, info.function().bdf() + " BAR" + info.bar()
                + " is a register block, not VRAM");
        ErrnoException.check(bar.size() >= info.visibleSize(), Errno.EINVAL, String.format("%s BAR%d of %#x bytes is smaller"
                + " than the visible VRAM window of %#x", info.function().bdf(), info.bar(), bar.size(), info.visibleSize()));
        List<VramInfo.Range> visible = unreserved(info, 0, info.visibleSize());
        List<P2pMemory.Resource> resources = visible.stream().map(r -> new P2pMemory.Resource(info.bar(), r.offset(),
                r.size(), bar.address() + r.offset())).toList();
        P2pMemory added = p2p.memory(info.function()).filter(m -> m.resources().containsAll(resources)).orElse(null);
        if (added == null) {
            for (VramInfo.Range r : visible) {
                added = p2p.addResource(info.function(), info.bar(), r.size(), r.offset());
            }
        }
        this.window = added;
        for (VramInfo.Range r : unreserved(info, info.visibleSize(), info.totalSize())) {
            beyond.add(r.offset(), r.size(), 0);
        }
    }

    /** The ranges of {@code [from, to)} outside every reserved range, in order. */
    private static List<VramInfo.Range> unreserved(VramInfo info, long from, long to) {
        List<VramInfo.Range> out = new ArrayList<>();
        long at = from;
        for (VramInfo.Range r : info.reserved()) {
            if (r.offset() > at && at < to) {
                out.add(new VramInfo.Range(at, Math.min(r.offset(), to) - at));
            }
            at = Math.max(at, r.end());
        }
        if (at < to) {
            out.add(new VramInfo.Range(at, to - at));
        }
        return out;
    }

    /**
     * A range of {@code size} bytes (whole pages), in the window when {@code visible}, or null when none is free.
     */
    Range alloc(long size, boolean visible) {
        if (!visible) {
            long at = beyond.alloc(size);
            if (at >= 0) {
                return new Range(at, GenPool.pagesFor(size) * GenPool.PAGE, null);
            }
        }
        if (window.available() < size) {
            return null;
        }
        try {
            P2pAllocation a = window.alloc(size);
            return new Range(a.barOffset(), a.size(), a);
        } catch (ErrnoException e) {
            if (e.errno() != Errno.ENOMEM) {
                throw e;
            }
            return null;
        }
    }

    void free(Range r) {
        if (r.window() != null) {
            window.free(r.window());
        } else {
            beyond.free(r.offset(), r.size());
        }
    }

    /** Bytes not handed out, window and beyond. */
    long available() {
        return window.available() + beyond.avail();
    }

    /** Bytes of the window not handed out. */
    long visibleAvailable() {
        return window.available();
    }

    VramInfo info() {
        return info;
    }
}
