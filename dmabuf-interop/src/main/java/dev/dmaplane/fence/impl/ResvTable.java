package dev.dmaplane.fence.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.ResvFence;
import dev.dmaplane.fence.ResvUsage;

import java.util.ArrayList;
import java.util.List;

/**
 * The fence table of a {@code struct dma_resv} ({@code struct dma_resv_list} in {@code drivers/dma-buf/dma-resv.c}).
 * Writers hold the reservation's lock; readers take the current immutable snapshot without it, as the kernel's
 * readers do under RCU.
 */
public final class ResvTable {
    /** A bound on the table, standing in for the allocation failure that makes the kernel return -ENOMEM. */
    public static final int MAX_FENCES = 1 << 16;

    private final String name;
    private volatile List<ResvFence> entries = List.of();
    /** Slots reserved and not yet filled; guarded by the reservation lock. */
    private int freeSlots;

    public ResvTable(String name) {
        this.name = name;
    }

    /**
     * {@code dma_resv_reserve_fences}: afterwards at least {@code n} fences can be added. Signalled fences are
     * dropped from the table here, as the kernel drops them when it reallocates.
     */
    public void reserve(int n) {
        ErrnoException.check(n >= 0, Errno.EINVAL, "cannot reserve " + n + " fence slots on " + name);
        List<ResvFence> live = new ArrayList<>();
        for (ResvFence e : entries) {
            if (!e.fence().isSignaled()) {
                live.add(e);
            }
        }
        ErrnoException.check((long) live.size() + n <= MAX_FENCES, Errno.ENOMEM, "reserving " + n + " slots on "
                + name + " beside its " + live.size() + " fences exceeds " + MAX_FENCES);
        entries = List.copyOf(live);
        freeSlots = Math.max(freeSlots, n);
    }

    /**
     * {@code dma_resv_add_fence}: replaces the first entry that is either of the same context with an equal or
     * higher usage, or already signalled; otherwise fills a reserved slot (ENOSPC if none is left, where the
     * kernel hits a BUG_ON). Containers are EINVAL (the kernel WARNs: add their fences one by one), and so is a
     * fence earlier than a pending one of its context that it would replace.
     */
    public void add(Fence fence, ResvUsage usage) {
        ErrnoException.check(!fence.isContainer(), Errno.EINVAL, "fence " + fence
                + " is a container; add its fences to " + name + " one by one");
        List<ResvFence> list = entries;
        for (ResvFence e : list) {
            if (e.fence().context() == fence.context() && e.usage().compareTo(usage) >= 0
                    && e.fence().isLater(fence) && !e.fence().isSignaled()) {
                throw new ErrnoException(Errno.EINVAL, "fence " + fence + " (" + usage + ") would replace the later "
                        + e.fence() + " (" + e.usage() + ") of its timeline on " + name);
            }
        }
        int slot = -1;
        for (int i = 0; i < list.size(); i++) {
            ResvFence e = list.get(i);
            if ((e.fence().context() == fence.context() && e.usage().compareTo(usage) >= 0)
                    || e.fence().isSignaled()) {
                slot = i;
                break;
            }
        }
        List<ResvFence> next = new ArrayList<>(list);
        if (slot >= 0) {
            next.set(slot, new ResvFence(fence, usage));
        } else {
            ErrnoException.check(freeSlots > 0, Errno.ENOSPC, "no reserved slot on " + name + " for fence " + fence
                    + " (" + usage + "); call reserveFences first");
            next.add(new ResvFence(fence, usage));
            freeSlots--;
        }
        entries = List.copyOf(next);
    }

    /** {@code dma_resv_replace_fences}: every entry of {@code context} now holds {@code replacement}. */
    public void replace(long context, Fence replacement, ResvUsage usage) {
        List<ResvFence> next = new ArrayList<>(entries);
        for (int i = 0; i < next.size(); i++) {
            if (next.get(i).fence().context().id() == context) {
                next.set(i, new ResvFence(replacement, usage));
            }
        }
        entries = List.copyOf(next);
    }

    /** Drops the unused reservation, as {@code dma_resv_reset_max_fences} does at unlock in debug kernels. */
    public void resetSlots() {
        freeSlots = 0;
    }

    public int freeSlots() {
        return freeSlots;
    }

    /** Every entry, signalled or not, in table order. */
    public List<ResvFence> snapshot() {
        return entries;
    }
}
