package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.driver.gpu.model.Apertures.Access;

import java.lang.foreign.MemorySegment;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * An engine's view of one VM for one job (what a GPU's address translation gives a shader or a DMA engine): reads
 * and writes at GPU virtual addresses, page by page through the engine's {@link Tlb} and the {@link GpuMmu}, or at
 * physical addresses for a {@link GpuRegs#FLAG_PHYSICAL} job in VM 0. Contiguous pages go out as one access.
 */
final class GpuVm {
    private final GpuMmu mmu;
    private final Tlb tlb;
    private final Apertures apertures;
    private final int vm;
    private final Abort abort;

    /** The engine's reset as a running job sees it. */
    interface Abort {
        /** Whether the engine was reset (or stopped) under the job. */
        boolean requested();

        /** Blocks until {@link #requested()}; the hung job's wait. */
        void await();
    }

    GpuVm(GpuMmu mmu, Tlb tlb, Apertures apertures, int vm, Abort abort) {
        this.mmu = mmu;
        this.tlb = tlb;
        this.apertures = apertures;
        this.vm = vm;
        this.abort = abort;
    }

    /** Ends the job if the engine was reset under it; jobs call it between chunks. */
    void checkAbort() {
        if (abort.requested()) {
            throw JobFault.aborted();
        }
    }

    /** Waits for the engine's reset, then ends the job. */
    void spinUntilReset() {
        abort.await();
        throw JobFault.aborted();
    }

    void read(long addr, MemorySegment dst) {
        access(addr, dst, Access.READ);
    }

    void write(long addr, MemorySegment src) {
        access(addr, src, Access.WRITE);
    }

    /**
     * Writes the zeros of {@code zeros} at {@code addr}, translated and checked as {@link #write} is; VRAM is
     * cleared without committing never-written chunks ({@link Access#CLEAR}).
     */
    void clear(long addr, MemorySegment zeros) {
        access(addr, zeros, Access.CLEAR);
    }

    private void access(long addr, MemorySegment buf, Access access) {
        boolean write = access.writes();
        long len = buf.byteSize();
        if (Long.compareUnsigned(addr + len - 1, addr) < 0) {
            throw JobFault.pageFault(addr, FAULT_RANGE, write, String.format("%#x+%#x wraps", addr, len));
        }
        if (vm == 0) {
            apertures.access(addr, buf, access);
            return;
        }
        long done = 0;
        while (done < len) {
            long va = addr + done;
            Tlb.Translation leaf = translate(va, write);
            long phys = leaf.phys(va);
            long n = Math.min(leaf.remaining(va), len - done);
            while (done + n < len) { // extend over physically contiguous leaves in the same aperture
                Tlb.Translation next = translate(va + n, write);
                if (next.phys(va + n) != phys + n) {
                    break;
                }
                n += Math.min(next.remaining(va + n), len - done - n);
            }
            if ((phys & APERTURE_SYSTEM) == 0 && !apertures.vram().contains(phys, n)) {
                throw JobFault.pageFault(va, FAULT_RANGE, write, String.format(
                        "VM %d: VA %#x maps VRAM %#x beyond VRAM", vm, va, phys));
            }
            apertures.access(phys, buf.asSlice(done, n), access);
            done += n;
        }
    }

    /** The translation of the leaf holding {@code va}. */
    private Tlb.Translation translate(long va, boolean write) {
        Tlb.Translation e = tlb.lookup(vm, va);
        if (e == null) {
            e = mmu.walk(vm, va, write);
            tlb.fill(vm, va, e);
        } else if (write && !e.writable()) {
            throw JobFault.pageFault(va, FAULT_READ_ONLY, true, String.format("VM %d: write to read-only VA %#x", vm, va));
        }
        return e;
    }
}
