package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.accel.spi.GpuVmOps;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Map.Entry;
import java.util.TreeMap;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * A GPU virtual address space on one hardware VM slot ({@code struct amdgpu_vm} with its page-table updates,
 * {@code amdgpu_vm_update_range}): the three-level tables of the datasheet built on demand from the driver's pool,
 * leaves written per 4 KiB page, the TLB invalidated after each change: the accel SPI's {@link GpuVmOps}.
 * Thread-safe.
 */
public final class GpuAddressSpace implements GpuVmOps {
    private final GpuVmManager manager;
    private final int slot;
    private final long root;
    /** Level-1 tables by VA bits 39..30, level-0 tables by VA bits 39..21. */
    private final Map<Long, Long> level1 = new HashMap<>();
    private final Map<Long, Long> level0 = new HashMap<>();
    /** Mapped ranges: start VA to length. */
    private final TreeMap<Long, Long> mapped = new TreeMap<>();
    private boolean destroyed;

    GpuAddressSpace(GpuVmManager manager, int slot, long root) {
        this.manager = manager;
        this.slot = slot;
        this.root = root;
    }

    /** The hardware VM id descriptors name. */
    public int slot() {
        return slot;
    }

    /**
     * Points {@code [va, va + total length of runs)} at {@code runs} in order, replacing entries already there
     * ({@code drm_gpuvm_sm_map}: a remap of a moved object), then the page-table update. {@code EINVAL} for a VA, run
     * or length not in whole 4 KiB pages, or reaching past the 40-bit VA space; {@code ENODEV} once destroyed;
     * {@code ENOMEM} if the page-table pool runs out (the tables made so far stay, empty).
     */
    @Override
    public synchronized void map(long va, List<GpuRun> runs, boolean writable) {
        checkLive("map");
        ErrnoException.check(runs != null && !runs.isEmpty(), Errno.EINVAL, "GPU VM " + slot + " map without runs");
        long length = 0;
        for (GpuRun r : runs) {
            ErrnoException.check(((r.address() | r.length()) & (PAGE_SIZE - 1)) == 0, Errno.EINVAL, String.format(
                    "GPU VM %d map: run %s %#x+%#x is not in whole %d-byte pages", slot, r.aperture(), r.address(),
                    r.length(), PAGE_SIZE));
            length += r.length();
        }
        checkRange("map", va, length);
        for (long p = va; p < va + length; p += TABLE_ENTRIES * PAGE_SIZE) {
            leaf(p); // every table first, so an ENOMEM leaves the old entries
        }
        leaf(va + length - PAGE_SIZE);
        forget(va, length);
        long at = va;
        for (GpuRun r : runs) {
            for (long off = 0; off < r.length(); off += PAGE_SIZE, at += PAGE_SIZE) {
                manager.write(leaf(at), ((r.address() + off) & PTE_ADDR_MASK) | PTE_VALID
                        | (writable ? PTE_WRITABLE : 0) | (r.aperture() == Aperture.SYSTEM ? PTE_SYSTEM : 0));
            }
        }
        mapped.put(va, length);
        manager.invalidate(slot);
    }

    /**
     * Unmaps every page of {@code [va, va + length)} ({@code drm_gpuvm_sm_unmap}); mappings partly inside are split.
     * {@code EINVAL} for a range not in whole pages or past the VA space; {@code ENODEV} once destroyed.
     */
    @Override
    public synchronized void unmap(long va, long length) {
        checkLive("unmap");
        checkRange("unmap", va, length);
        for (long[] piece : forget(va, length)) {
            for (long p = piece[0]; p < piece[0] + piece[1]; p += PAGE_SIZE) {
                manager.write(leaf(p), 0);
            }
        }
        manager.invalidate(slot);
    }

    /** Drops {@code [va, va + length)} from the bookkeeping, splitting ranges partly inside; the pieces dropped. */
    private List<long[]> forget(long va, long length) {
        long end = va + length;
        List<long[]> keep = new ArrayList<>();
        List<long[]> dropped = new ArrayList<>();
        Entry<Long, Long> e = mapped.lowerEntry(end);
        while (e != null && e.getKey() + e.getValue() > va) {
            long s = e.getKey();
            long t = s + e.getValue();
            mapped.remove(s);
            if (s < va) {
                keep.add(new long[] {s, va - s});
            }
            if (t > end) {
                keep.add(new long[] {end, t - end});
            }
            dropped.add(new long[] {Math.max(s, va), Math.min(t, end) - Math.max(s, va)});
            e = mapped.lowerEntry(s);
        }
        keep.forEach(k -> mapped.put(k[0], k[1]));
        return dropped;
    }

    /** Bytes mapped. */
    public synchronized long mappedBytes() {
        return mapped.values().stream().mapToLong(Long::longValue).sum();
    }

    /** Uninstalls the root, invalidates the TLB, frees every table and the slot ({@code amdgpu_vm_fini}). Idempotent. */
    @Override
    public synchronized void destroy() {
        if (destroyed) {
            return;
        }
        destroyed = true;
        manager.retire(this);
        PageTablePool pool = manager.pool();
        level0.values().forEach(t -> pool.free(t, 1));
        level1.values().forEach(t -> pool.free(t, 1));
        pool.free(root, ROOT_ENTRIES * 8 / (int) PAGE_SIZE);
        level0.clear();
        level1.clear();
        mapped.clear();
    }

    private void checkLive(String op) {
        ErrnoException.check(!destroyed, Errno.ENODEV, "GPU VM " + slot + " " + op + " after destroy");
    }

    private void checkRange(String op, long va, long length) {
        ErrnoException.check(((va | length) & (PAGE_SIZE - 1)) == 0 && length > 0 && va >= 0
                        && va + length <= 1L << VA_BITS && va + length > va, Errno.EINVAL,
                String.format("GPU VM %d %s %#x+%#x: not whole pages inside the %d-bit VA space", slot, op, va,
                        length, VA_BITS));
    }

    /** The VRAM offset of the level-0 entry of {@code va}, tables made as needed. */
    private long leaf(long va) {
        long l1 = level1.computeIfAbsent(va >>> 30, k -> table(root + 8 * (k & (ROOT_ENTRIES - 1))));
        long l0 = level0.computeIfAbsent(va >>> 21, k -> table(l1 + 8 * (k & (TABLE_ENTRIES - 1))));
        return l0 + 8 * ((va >>> PAGE_SHIFT) & (TABLE_ENTRIES - 1));
    }

    /** A new zeroed table linked from the directory entry at {@code pde}. */
    private long table(long pde) {
        long t = manager.pool().alloc(1);
        manager.write(pde, t | PTE_VALID);
        return t;
    }

    @Override
    public String toString() {
        return "GPU VM " + slot;
    }
}
