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
    /** The most a copy moves between checks for a reset: one VRAM chunk. */
    static final long COPY_RUN = Vram.CHUNK;

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
        checkWrap(addr, len, write);
        if (vm == 0) {
            apertures.access(addr, buf, access);
            return;
        }
        long done = 0;
        while (done < len) {
            Run r = run(addr + done, len - done, write);
            apertures.access(r.phys, buf.asSlice(done, r.length), access);
            done += r.length;
        }
    }

    /**
     * Copies {@code length} bytes from {@code src} to {@code dst} in place ({@link Apertures#copy}), one physically
     * contiguous run of both sides at a time, at most {@link #COPY_RUN} bytes between checks for a reset; a fault
     * ends it at the run it met, the runs before stay written.
     */
    void copy(long src, long dst, long length, MemorySegment staging) {
        checkWrap(src, length, false);
        checkWrap(dst, length, true);
        long done = 0;
        while (done < length) {
            checkAbort();
            long n = Math.min(length - done, COPY_RUN);
            if (vm == 0) {
                apertures.copy(src + done, dst + done, n, staging);
            } else {
                Run from = run(src + done, n, false);
                Run to = run(dst + done, from.length, true);
                n = to.length;
                apertures.copy(from.phys, to.phys, n, staging);
            }
            done += n;
        }
    }

    private static void checkWrap(long addr, long len, boolean write) {
        if (Long.compareUnsigned(addr + len - 1, addr) < 0) {
            throw JobFault.pageFault(addr, FAULT_RANGE, write, String.format("%#x+%#x wraps", addr, len));
        }
    }

    /** A physically contiguous piece of a VM range: where it starts and how long it is. */
    private record Run(long phys, long length) {
    }

    /**
     * The physical run at {@code va}, at most {@code max} bytes: the leaf's translation extended over the leaves
     * after it while they stay physically contiguous; a VRAM address beyond VRAM is a page fault.
     */
    private Run run(long va, long max, boolean write) {
        Tlb.Translation leaf = translate(va, write);
        long phys = leaf.phys(va);
        long n = Math.min(leaf.remaining(va), max);
        while (n < max) { // extend over physically contiguous leaves in the same aperture
            Tlb.Translation next = translate(va + n, write);
            if (next.phys(va + n) != phys + n) {
                break;
            }
            n += Math.min(next.remaining(va + n), max - n);
        }
        if ((phys & APERTURE_SYSTEM) == 0 && !apertures.vram().contains(phys, n)) {
            throw JobFault.pageFault(va, FAULT_RANGE, write, String.format(
                    "VM %d: VA %#x maps VRAM %#x beyond VRAM", vm, va, phys));
        }
        return new Run(phys, n);
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
