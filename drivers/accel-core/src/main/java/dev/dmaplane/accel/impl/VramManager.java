package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.spi.VramInfo;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.genalloc.GenPool;
import dev.dmaplane.p2pdma.P2pAllocation;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.p2pdma.P2pMemory;
import dev.dmaplane.pci.Bar;

/**
 * TTM's VRAM manager of one device ({@code amdgpu_vram_mgr.c}, without the buddy allocator): the CPU-visible
 * window is the GPU's own p2pmem (the BAR's first {@code visibleSize} bytes added to p2pdma's pool, unpublished),
 * VRAM beyond it a second range of the same allocator ({@link GenPool}). An allocation that need not be visible
 * goes beyond the window first, keeping the window for objects the CPU or peers touch (amdgpu allocates
 * {@code NO_CPU_ACCESS} objects top-down for the same reason).
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
        this.window = p2p.memory(info.function())
                .filter(m -> m.resources().contains(new P2pMemory.Resource(info.bar(), 0, info.visibleSize(), bar.address())))
                .orElseGet(() -> p2p.addResource(info.function(), info.bar(), info.visibleSize(), 0));
        if (info.invisibleSize() > 0) {
            beyond.add(info.visibleSize(), info.invisibleSize(), 0);
        }
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
