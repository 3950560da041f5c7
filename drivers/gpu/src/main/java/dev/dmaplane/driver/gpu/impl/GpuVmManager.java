package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Bar;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * The GPU MMU's VM slots ({@code amdgpu_vmid.c}'s VMID manager, reduced to a fixed assignment): slot 0 is the
 * kernel's physical VM, slots 1..15 are handed to {@link GpuAddressSpace}s; their page tables come from the
 * {@link PageTablePool} and are written through the VRAM window, and {@code TLB_INVALIDATE} follows each change
 * ({@code amdgpu_gmc_flush_gpu_tlb}). Thread-safe.
 */
final class GpuVmManager {
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Bar.Mmio regs;
    private final Bar.Memory window;
    private final PageTablePool pool;
    private final BitSet slots = new BitSet(VM_COUNT);
    private final List<GpuAddressSpace> live = new ArrayList<>();

    GpuVmManager(Bar.Mmio regs, Bar.Memory window, PageTablePool pool) {
        this.regs = regs;
        this.window = window;
        this.pool = pool;
        slots.set(0);
    }

    PageTablePool pool() {
        return pool;
    }

    /** A new address space on a free slot, its root table zeroed and installed. {@code ENOSPC} when all 15 are used. */
    GpuAddressSpace create() {
        int slot;
        synchronized (this) {
            slot = slots.nextClearBit(1);
            ErrnoException.check(slot < VM_COUNT, Errno.ENOSPC, "all " + (VM_COUNT - 1) + " GPU VM slots are in use");
            slots.set(slot);
        }
        long root;
        try {
            root = pool.alloc(ROOT_ENTRIES * 8 / (int) PAGE_SIZE);
        } catch (RuntimeException e) {
            release(slot);
            throw e;
        }
        regs.write(regVmRoot(slot), 8, root);
        invalidate(slot);
        GpuAddressSpace vm = new GpuAddressSpace(this, slot, root);
        synchronized (this) {
            live.add(vm);
        }
        return vm;
    }

    /** Uninstalls {@code vm}'s root, drops its translations and gives its slot back. */
    void retire(GpuAddressSpace vm) {
        regs.write(regVmRoot(vm.slot()), 8, 0);
        invalidate(vm.slot());
        synchronized (this) {
            live.remove(vm);
        }
        release(vm.slot());
    }

    private synchronized void release(int slot) {
        slots.clear(slot);
    }

    synchronized List<GpuAddressSpace> live() {
        return List.copyOf(live);
    }

    void invalidate(int slot) {
        regs.write(REG_TLB_INVALIDATE, 8, slot);
    }

    long read(long at) {
        MemorySegment s = MemorySegment.ofArray(new long[1]);
        window.read(at, s);
        return s.get(U64, 0);
    }

    void write(long at, long entry) {
        MemorySegment s = MemorySegment.ofArray(new long[1]);
        s.set(U64, 0, entry);
        window.write(at, s);
    }
}
