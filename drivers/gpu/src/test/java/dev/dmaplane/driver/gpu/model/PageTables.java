package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.pci.Bar;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * A VM's page tables built by the test as a driver's {@code amdgpu_vm_update} would, written through the CPU-visible
 * VRAM window: tables come from a bump allocator at {@code tableArea}, the root is 8 KiB.
 */
final class PageTables {
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Bar.Memory window;
    private long next;
    final long root;

    PageTables(Bar.Memory window, long tableArea) {
        this.window = window;
        this.next = tableArea;
        this.root = table(2 * PAGE_SIZE);
    }

    private long table(long size) {
        long t = next;
        next += size;
        window.write(t, MemorySegment.ofArray(new byte[(int) size]));
        return t;
    }

    private long get(long at) {
        MemorySegment s = MemorySegment.ofArray(new long[1]);
        window.read(at, s);
        return s.get(U64, 0);
    }

    private void set(long at, long pte) {
        MemorySegment s = MemorySegment.ofArray(new long[1]);
        s.set(U64, 0, pte);
        window.write(at, s);
    }

    /** The level-1 table covering {@code va}, made if missing. */
    private long level1(long va) {
        long at = root + 8 * ((va >>> 30) & (ROOT_ENTRIES - 1));
        long pde = get(at);
        if ((pde & PTE_VALID) == 0) {
            pde = table(PAGE_SIZE) | PTE_VALID;
            set(at, pde);
        }
        return pde & PTE_ADDR_MASK;
    }

    /** The level-0 entry's VRAM offset for {@code va}, tables made if missing. */
    private long pteAt(long va) {
        long at = level1(va) + 8 * ((va >>> 21) & (TABLE_ENTRIES - 1));
        long pde = get(at);
        if ((pde & PTE_VALID) == 0) {
            pde = table(PAGE_SIZE) | PTE_VALID;
            set(at, pde);
        }
        return (pde & PTE_ADDR_MASK) + 8 * ((va >>> PAGE_SHIFT) & (TABLE_ENTRIES - 1));
    }

    /**
     * Maps {@code bytes} (whole pages) at {@code va} onto physical {@code phys} (aperture-tagged, contiguous): SYSTEM
     * pages become {@link GpuRegs#PTE_SYSTEM} entries.
     */
    void map(long va, long phys, long bytes, boolean writable) {
        for (long off = 0; off < bytes; off += PAGE_SIZE) {
            long p = phys + off;
            long pte = (p & PTE_ADDR_MASK) | PTE_VALID | (writable ? PTE_WRITABLE : 0)
                    | ((p & APERTURE_SYSTEM) != 0 ? PTE_SYSTEM : 0);
            set(pteAt(va + off), pte);
        }
    }

    /** A 2 MiB leaf at level 1 mapping {@code va} onto VRAM offset {@code vram}, both 2 MiB aligned. */
    void mapHuge(long va, long vram, boolean writable) {
        set(level1(va) + 8 * ((va >>> 21) & (TABLE_ENTRIES - 1)),
                vram | PTE_VALID | PTE_HUGE | (writable ? PTE_WRITABLE : 0));
    }

    void unmap(long va) {
        set(pteAt(va), 0);
    }
}
