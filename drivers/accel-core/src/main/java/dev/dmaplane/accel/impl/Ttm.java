package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.spi.AccelProvider;
import dev.dmaplane.accel.spi.BoMove;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.Fences;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * Placement, eviction and moves of one device's buffer objects ({@code ttm_bo.c}, {@code ttm_resource.c},
 * {@code ttm_bo_util.c}). One lock serialises every placement decision of the device (TTM's {@code lru_lock}
 * with the reservation locks it takes for eviction); a move's copy runs on the driver's engine without it.
 * <p>
 * <b>Placement</b> ({@code ttm_bo_alloc_resource}): the preferred placement, evicting unpinned objects from VRAM
 * in LRU order if it is VRAM; then the other allowed placements without eviction; then with eviction. Eviction
 * ({@code ttm_bo_evict}) moves an object to host memory and waits (bounded) for that move before the freed VRAM
 * is handed out again, as {@code ttm_bo_mem_force_space} waits on the manager's move fence.
 * <p>
 * <b>Moves</b> ({@code ttm_bo_handle_move_mem}, {@code ttm_bo_move_accel_cleanup}): the driver copies after every
 * fence on the object's reservation; its fence is added at {@code KERNEL} usage, the object points at its new
 * backing at once, and the old backing is freed only when the fence signals. Every VM mapping of the object goes
 * on its VM's evict list, so its page tables are rewritten before the object is used again.
 */
final class Ttm {
    private static final Logger LOG = LoggerFactory.getLogger(Ttm.class);

    final ReentrantLock lock = new ReentrantLock();
    private final String device;
    private final AccelProvider provider;
    private final VramManager vram;
    private final HostMemory mem;
    private final DmaApi dma;
    private final Tracer tracer;
    private final Duration timeout;
    /** Objects in VRAM, least recently used first ({@code man->lru}). */
    private final Set<BoImpl> lru = new LinkedHashSet<>();
    /**
     * Backings freed when their fence signals: sources of moves in flight and delayed deletes
     * ({@code ttm_bo_delayed_delete}). The fence's callback frees them; {@link #reap} frees those whose fence
     * signalled but whose callback has not run yet, so a caller that saw the fence signal sees the memory back.
     */
    private final Map<Backing, Fence> retiring = new ConcurrentHashMap<>();
    /** What runs just before a retiring backing is freed (an exporter cutting its importers off the old place). */
    private final Map<Backing, Runnable> beforeFree = new ConcurrentHashMap<>();
    /** PRIME exports of this device's objects, for evicting an exported object with moveNotify. */
    private Prime prime;

    Ttm(String device, AccelProvider provider, VramManager vram, HostMemory mem, DmaApi dma, Tracer tracer, Duration timeout) {
        this.device = device;
        this.provider = provider;
        this.vram = vram;
        this.mem = mem;
        this.dma = dma;
        this.tracer = tracer;
        this.timeout = timeout;
    }

    Duration timeout() {
        return timeout;
    }

    void setPrime(Prime prime) {
        this.prime = prime;
    }

    VramManager vram() {
        return vram;
    }

    /** Gives {@code bo} its first backing, zeroed (VRAM by the driver's clear, a KERNEL fence), or throws ENOMEM. */
    void populate(BoImpl bo) {
        Backing b = allocate(bo);
        if (b instanceof VramBacking) {
            Fence clear;
            try {
                clear = provider.clear(bo.name, b.runs());
            } catch (RuntimeException e) {
                b.free();
                throw e;
            }
            addKernelFence(bo, clear);
        }
        bo.backing = b;
        touch(bo);
    }

    private Backing allocate(BoImpl bo) {
        Backing b = allocate(bo, bo.preferred, true, true);
        for (int pass = 0; b == null && pass < 2; pass++) {
            for (Placement p : Placement.values()) {
                if (b == null && p != bo.preferred && bo.allowed.contains(p)) {
                    b = allocate(bo, p, pass == 1, true);
                }
            }
        }
        if (b == null) {
            throw new ErrnoException(Errno.ENOMEM, String.format("%s: no room for %s (%d bytes) in %s: VRAM %d bytes free,"
                    + " nothing evictable", device, bo.name, bo.size, bo.allowed, vram.available()));
        }
        return b;
    }

    /**
     * A backing in {@code p} for a move of {@code bo} there, evicting if {@code evict}; null when there is no room.
     * Host pages are not zeroed: the move overwrites them ({@link #move} clears them if it fails).
     */
    Backing allocateForMove(BoImpl bo, Placement p, boolean evict) {
        return allocate(bo, p, evict, false);
    }

    /**
     * A backing in {@code p}, evicting if {@code evict}, host pages zeroed if {@code zero}; null when there is no
     * room. An exported object's VRAM is in the window, where its importers reach it peer-to-peer
     * ({@code amdgpu_dma_buf_pin}'s placement).
     */
    private Backing allocate(BoImpl bo, Placement p, boolean evict, boolean zero) {
        if (p == Placement.HOST) {
            try {
                return HostPages.allocate(mem, dma, bo.size, zero);
            } catch (ErrnoException e) {
                if (e.errno() != Errno.ENOMEM) {
                    throw e;
                }
                return null;
            }
        }
        boolean visible = p == Placement.VISIBLE_VRAM || bo.exported != null;
        while (true) {
            VramManager.Range r = vram.alloc(bo.size, visible);
            if (r != null) {
                return new VramBacking(vram, r);
            }
            if (!evict) {
                return null;
            }
            BoImpl victim = victim(bo, visible);
            if (victim != null) {
                evict(victim, visible);
            } else if (!awaitRetiringVram()) {
                return null;
            }
        }
    }

    /**
     * Waits (bounded) for the fence of one VRAM backing that is only waiting to be freed, as TTM's LRU walk waits
     * for a deleted object's fences and frees it ({@code ttm_bo_wait_ctx} then {@code ttm_bo_cleanup_memtype_use}).
     *
     * @return false when no VRAM backing is retiring
     */
    private boolean awaitRetiringVram() {
        for (Map.Entry<Backing, Fence> e : retiring.entrySet()) {
            if (e.getKey() instanceof VramBacking) {
                if (!e.getValue().await(timeout)) {
                    throw new ErrnoException(Errno.ETIME, device + ": VRAM " + e.getKey() + " still busy after " + timeout
                            + " behind " + e.getValue());
                }
                free(e.getKey(), e.getValue());
                return true;
            }
        }
        return false;
    }

    /**
     * The least recently used object that may leave VRAM for host memory ({@code ttm_lru_walk}); an exported one only
     * if its reservation is free to take ({@code dma_resv_trylock} in {@code ttm_bo_evict_swapout_allowable}), and
     * then with that lock held for its move; an object pinned for a peer-to-peer importer is pinned, so never a victim.
     */
    private BoImpl victim(BoImpl forWhom, boolean visible) {
        for (BoImpl b : lru) {
            if (b != forWhom && b.pins == 0 && b.allowed.contains(Placement.HOST) && (!visible || b.backing.cpuVisible())
                    && (b.exported == null || b.resv.tryLock())) {
                return b;
            }
        }
        return null;
    }

    private void evict(BoImpl victim, boolean visible) {
        Backing old = victim.backing;
        Fence f;
        if (victim.exported != null) {
            try {
                f = prime.evict(victim);
            } finally {
                victim.resv.unlock();
            }
        } else {
            f = move(victim, HostPages.allocate(mem, dma, victim.size, false), "evicted", victim.resv.fences(ResvUsage.BOOKKEEP), null);
        }
        await(f, victim, "eviction");
        free(old, f);
    }

    /**
     * Moves {@code bo} to {@code to} (already allocated): the driver's copy after the object's fences, the fence
     * at KERNEL usage, the old backing freed when it signals.
     */
    Fence move(BoImpl bo, Backing to, String why) {
        return move(bo, to, why, bo.resv.fences(ResvUsage.BOOKKEEP), null);
    }

    /**
     * {@link #move} after {@code after} (the object's fences and whatever its exporter adds), running {@code retire}
     * (if not null) just before the old backing is freed.
     */
    Fence move(BoImpl bo, Backing to, String why, List<Fence> after, Runnable retire) {
        Backing from = bo.backing;
        Fence f;
        try {
            f = provider.move(new BoMove(bo.name, bo.size, from.runs(), to.runs(), after));
            if (to instanceof HostPages pages) {
                f = clearedIfFailed(pages, f, bo.name);
            }
            addKernelFence(bo, f);
        } catch (RuntimeException e) {
            to.free();
            throw e;
        }
        bo.backing = to;
        lru.remove(bo);
        touch(bo);
        tracer.emit(TraceKind.MIGRATE, device, -1, bo.size, bo.name + " " + why + ": " + from + " -> " + to + " behind " + f);
        if (retire != null) {
            beforeFree.put(from, retire);
        }
        retire(from, f, bo.name);
        for (VmImpl.Mapping m : bo.mappings) {
            m.vm().evicted.add(bo);
        }
        return f;
    }

    /**
     * Moves {@code bo} into {@code p} if it is not there ({@code ttm_bo_validate}), evicting others if needed.
     *
     * @return whether the object is now in {@code p}
     */
    boolean moveTo(BoImpl bo, Placement p, boolean evict) {
        if (in(bo.backing, p)) {
            return true;
        }
        if (bo.pins > 0) {
            return false;
        }
        if (bo.exported != null) {
            return prime.move(bo, p);
        }
        Backing to = allocateForMove(bo, p, evict);
        if (to == null) {
            return false;
        }
        move(bo, to, "moved to " + p);
        return true;
    }

    static boolean in(Backing b, Placement p) {
        return p == Placement.VRAM ? b instanceof VramBacking : b.placement() == p;
    }

    /** Marks {@code bo} most recently used ({@code ttm_bo_move_to_lru_tail}). */
    void touch(BoImpl bo) {
        lru.remove(bo);
        if (bo.backing instanceof VramBacking) {
            lru.add(bo);
        }
    }

    /** The last reference went: off the LRU, the backing freed once every fence of the object signalled. */
    void release(BoImpl bo) {
        bo.freed = true;
        lru.remove(bo);
        Backing b = bo.backing;
        List<Fence> busy = bo.resv.fences(ResvUsage.BOOKKEEP);
        if (busy.isEmpty()) {
            b.free();
        } else {
            retire(b, Fences.all(busy), bo.name);
        }
    }

    /**
     * The fence of a move into host pages that were not zeroed: it signals after the driver's {@code copy}, with its
     * error, and when the copy failed the pages are zeroed first, so that no waiter reads what they held before they
     * were allocated. A fence context of its own, since moves of different objects finish in any order.
     */
    private Fence clearedIfFailed(HostPages to, Fence copy, String bo) {
        Fence moved = FenceContext.allocate("ttm", device + " move of " + bo, tracer).createFence();
        Consumer<Fence> done = c -> {
            try {
                c.error().ifPresent(e -> {
                    LOG.warn("{}: the move of {} failed with {}; its host pages are zeroed", device, bo, e);
                    to.clear();
                    moved.setError(e);
                });
            } finally {
                moved.signal();
            }
        };
        if (!copy.addCallback(done)) {
            done.accept(copy);
        }
        return moved;
    }

    private void retire(Backing old, Fence when, String bo) {
        retiring.put(old, when);
        tracer.emit(TraceKind.MIGRATE, device, -1, old.size(), bo + ": " + old + " freed when " + when + " signals");
        if (!when.addCallback(f -> free(old, f))) {
            free(old, when);
        }
    }

    /**
     * Frees {@code old} before it leaves {@link #retiring}: a reaper that finds the entry gone knows the memory is
     * back (the backing's free is idempotent and synchronised, so a reaper racing the callback waits for it).
     */
    private void free(Backing old, Fence f) {
        Runnable hook = beforeFree.remove(old);
        if (hook != null) {
            hook.run();
        }
        old.free();
        if (retiring.remove(old, f)) {
            f.error().ifPresent(e -> LOG.error("{}: {} finished with {}; {} freed all the same", device, f, e, old));
        }
    }

    /** Frees every retiring backing whose fence has signalled. */
    void reap() {
        retiring.forEach((b, f) -> {
            if (f.isSignaled()) {
                free(b, f);
            }
        });
    }

    /** Waits (bounded) for every fence of {@code bo} up to {@code usage}; ETIME otherwise. */
    void awaitIdle(BoImpl bo, ResvUsage usage) {
        if (!bo.resv.await(usage, timeout)) {
            throw new ErrnoException(Errno.ETIME, device + ": " + bo.name + " still busy after " + timeout + ": " + bo.resv.fences(usage));
        }
    }

    private void await(Fence f, BoImpl bo, String what) {
        if (!f.await(timeout)) {
            throw new ErrnoException(Errno.ETIME, device + ": " + what + " of " + bo.name + " (" + f + ") did not finish in " + timeout);
        }
    }

    /** Adds {@code f} at KERNEL usage, taking the reservation lock unless this thread holds it (an exporter's move). */
    private void addKernelFence(BoImpl bo, Fence f) {
        boolean held = bo.resv.isHeldByCurrentThread();
        if (!held) {
            bo.resv.lock();
        }
        try {
            bo.resv.reserveFences(1);
            bo.resv.addFence(f, ResvUsage.KERNEL);
        } finally {
            if (!held) {
                bo.resv.unlock();
            }
        }
    }

    /** Drops one reference of {@code bo} (a handle, a VM mapping, an export); the last one releases it. */
    void unref(BoImpl bo) {
        if (--bo.refs == 0) {
            release(bo);
        }
    }

    /**
     * Waits (bounded) for every pending free; how many were still pending at the deadline (their memory leaks
     * until they signal).
     */
    int drain() {
        if (!Fences.awaitAll(new ArrayList<>(retiring.values()), timeout)) {
            LOG.error("{}: {} backing(s) still waiting for their fences after {}", device, retiring.size(), timeout);
        }
        reap();
        return retiring.size();
    }
}
