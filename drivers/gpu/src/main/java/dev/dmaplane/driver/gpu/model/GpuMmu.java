package dev.dmaplane.driver.gpu.model;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicLongArray;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * The GPU MMU (the hardware side of {@code drm_gpuvm} page tables, as amdgpu's VMHUB walks them): VM roots, the
 * three-level walk through tables in VRAM, and the fault latch. Every engine asks it through its own {@link Tlb}.
 */
final class GpuMmu {
    private final Vram vram;
    private final AtomicLongArray roots = new AtomicLongArray(VM_COUNT);
    private long faultStatus;
    private long faultAddr;
    private long faultCount;

    GpuMmu(Vram vram) {
        this.vram = vram;
    }

    long root(int vm) {
        return roots.get(vm);
    }

    /** VM 0 has no root; a root is a 4 KiB aligned VRAM offset with room for the 8 KiB table, else it is dropped. */
    void setRoot(int vm, long root) {
        if (vm != 0 && (root & (PAGE_SIZE - 1)) == 0 && vram.contains(root, 8L * ROOT_ENTRIES)) {
            roots.set(vm, root);
        }
    }

    /**
     * Walks VM {@code vm}'s tables for the page of {@code va}, checks write permission and returns the translation
     * of its leaf (a 4 KiB page, or the whole 2 MiB entry).
     *
     * @throws JobFault {@link GpuRegs#ST_PAGE_FAULT} with the reason
     */
    Tlb.Translation walk(int vm, long va, boolean write) {
        if ((va >>> VA_BITS) != 0) {
            throw JobFault.pageFault(va, FAULT_RANGE, write, String.format("VM %d: VA %#x has more than %d bits",
                    vm, va, VA_BITS));
        }
        long table = roots.get(vm);
        if (table == 0) {
            throw JobFault.pageFault(va, FAULT_NOT_PRESENT, write, "VM " + vm + " is off");
        }
        long pde2 = entry(vm, va, table, (int) (va >>> 30) & (ROOT_ENTRIES - 1), 2, write);
        long pde1 = entry(vm, va, tableOf(vm, va, pde2, 2, write), (int) (va >>> 21) & (TABLE_ENTRIES - 1), 1, write);
        Tlb.Translation leaf;
        if ((pde1 & PTE_HUGE) != 0) {
            long base = pde1 & PTE_ADDR_MASK;
            if ((base & (HUGE_PAGE_SIZE - 1)) != 0) {
                throw JobFault.pageFault(va, FAULT_BAD_TABLE, write, String.format(
                        "VM %d: 2 MiB entry for VA %#x points at unaligned %#x", vm, va, base));
            }
            leaf = leaf(pde1, base, HUGE_PAGE_SIZE);
        } else {
            long pte = entry(vm, va, tableOf(vm, va, pde1, 1, write), (int) (va >>> PAGE_SHIFT) & (TABLE_ENTRIES - 1), 0,
                    write);
            leaf = leaf(pte, pte & PTE_ADDR_MASK, PAGE_SIZE);
        }
        if (write && !leaf.writable()) {
            throw JobFault.pageFault(va, FAULT_READ_ONLY, true, String.format("VM %d: write to read-only VA %#x", vm, va));
        }
        return leaf;
    }

    private static Tlb.Translation leaf(long pte, long base, long size) {
        return new Tlb.Translation((pte & PTE_SYSTEM) != 0 ? base | APERTURE_SYSTEM : base, (pte & PTE_WRITABLE) != 0, size);
    }

    private long entry(int vm, long va, long table, int index, int level, boolean write) {
        MemorySegment e = MemorySegment.ofArray(new long[1]);
        vram.read(table + 8L * index, e);
        long pte = e.get(ValueLayout.JAVA_LONG, 0);
        if ((pte & PTE_VALID) == 0) {
            throw JobFault.pageFault(va, FAULT_NOT_PRESENT, write, String.format(
                    "VM %d: no valid level-%d entry for VA %#x", vm, level, va));
        }
        if ((pte & PTE_HUGE) != 0 && level != 1) {
            throw JobFault.pageFault(va, FAULT_BAD_TABLE, write, String.format(
                    "VM %d: PTE_HUGE in a level-%d entry for VA %#x", vm, level, va));
        }
        return pte;
    }

    /** The VRAM offset of the next table an entry points at. */
    private long tableOf(int vm, long va, long pde, int level, boolean write) {
        long next = pde & PTE_ADDR_MASK;
        if ((pde & PTE_SYSTEM) != 0 || !vram.contains(next, PAGE_SIZE)) {
            throw JobFault.pageFault(va, FAULT_BAD_TABLE, write, String.format(
                    "VM %d: level-%d entry %#x for VA %#x does not point at a table in VRAM", vm, level, pde, va));
        }
        return next;
    }

    /** Records a page fault; only the first is latched until {@link #clearFault}. */
    synchronized void latch(int engine, int vm, JobFault f) {
        faultCount++;
        if ((faultStatus & MMU_FAULT_VALID) == 0) {
            faultStatus = MMU_FAULT_VALID | (f.write ? MMU_FAULT_WRITE : 0)
                    | ((long) engine << MMU_FAULT_ENGINE_SHIFT) | ((long) (vm & 0xFF) << MMU_FAULT_VM_SHIFT)
                    | ((long) f.reason << MMU_FAULT_REASON_SHIFT);
            faultAddr = f.address;
        }
    }

    synchronized long faultStatus() {
        return faultStatus;
    }

    synchronized long faultAddr() {
        return faultAddr;
    }

    synchronized long faultCount() {
        return faultCount;
    }

    /** Writing {@link GpuRegs#MMU_FAULT_VALID} to the status register frees the latch. */
    synchronized void clearFault(long value) {
        if ((value & MMU_FAULT_VALID) != 0) {
            faultStatus = 0;
            faultAddr = 0;
        }
    }

    /** Power-on: every VM off, no fault. */
    synchronized void reset() {
        for (int vm = 0; vm < VM_COUNT; vm++) {
            roots.set(vm, 0);
        }
        faultStatus = faultAddr = faultCount = 0;
    }
}
