package dev.dmaplane.mm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.InvalidateReason;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.trace.TraceKind;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;

/**
 * One mmap of a range of a PCI function's BAR ({@code VM_IO | VM_PFNMAP}), as {@code vfio_pci_core_mmap},
 * {@code vfio_pci_mmap_huge_fault} and {@code vfio_pci_zap_bars} in {@code drivers/vfio/pci/vfio_pci_core.c} keep
 * one: a page is inserted as a special entry ({@code vmf_insert_pfn} in {@code mm/memory.c}) on its first access
 * while the function decodes memory, else the access is {@code SIGBUS} ({@code EFAULT}). A reset of the function
 * (FLR, secondary bus reset) or its driver ({@link PciFunction#zapBarMappings}, before memory decoding goes off)
 * zaps every page ({@code unmap_mapping_range}, notifiers see CLEAR), and the next access faults it in again if
 * the BAR still decodes; the function's removal zaps them for good. Loads and stores go to
 * the BAR's register block, split into naturally aligned accesses of at most 8 bytes as CPU instructions issue
 * them, or to its memory.
 * <p>
 * Locks: the regions set is changed under {@code mmap_lock} held for writing and this object's monitor; a zap
 * holds the monitor (as {@code unmap_mapping_range} holds {@code i_mmap_rwsem}) and then takes the notifier and
 * page-table locks. A fault reads the zap generation before it checks decoding and installs its entry under the
 * page-table lock only if no zap came in between, so no entry survives a zap.
 */
final class PfnMap {
    private final Mm mm;
    private final PciFunction fn;
    private final Bar bar;
    /** The regions of this mapping, its {@code i_mmap}; guarded by this. */
    private final Set<Region> regions = Collections.newSetFromMap(new IdentityHashMap<>());
    /** Changes before every zap clears an entry. */
    private final AtomicLong generation = new AtomicLong();
    /** Why the mapping is zapped for good, or null. */
    private volatile String gone;
    /** What stops the reset and removal listeners while regions exist; guarded by this. */
    private Runnable stopResets;
    private Runnable stopRemoval;
    private Runnable stopZaps;

    private PfnMap(Mm mm, PciFunction fn, Bar bar) {
        this.mm = mm;
        this.fn = fn;
        this.bar = bar;
    }

    /**
     * The checks of {@code vfio_pci_core_mmap} for bytes {@code [offset, offset + length)} of BAR {@code index}.
     *
     * @throws ErrnoException {@code EINVAL} for a null function, a BAR the function does not implement, an
     *                        unaligned or negative offset, a length below 1, or a range past the BAR's end;
     *                        {@code ENODEV} when the function is not on its bus
     */
    static PfnMap open(Mm mm, PciFunction fn, int index, long offset, long length) {
        if (fn == null) {
            throw new ErrnoException(Errno.EINVAL, "mmap of a BAR of a null PCI function");
        }
        Bar bar = fn.bar(index).orElseThrow(() -> new ErrnoException(Errno.EINVAL, "mmap of BAR " + index + " of "
                + fn.bdf() + ", which the function does not implement"));
        if (offset < 0 || (offset & Mm.PAGE_MASK) != 0) {
            throw new ErrnoException(Errno.EINVAL, "mmap of BAR " + index + " of " + fn.bdf() + " at offset 0x"
                    + Long.toHexString(offset) + ": not a page-aligned offset");
        }
        if (length <= 0) {
            throw new ErrnoException(Errno.EINVAL, "mmap length must be > 0, not " + length);
        }
        long barLen = (bar.size() + Mm.PAGE_MASK) & ~Mm.PAGE_MASK;
        if (offset > barLen || length > barLen - offset) {
            throw new ErrnoException(Errno.EINVAL, "mmap of 0x" + Long.toHexString(offset) + "+0x"
                    + Long.toHexString(length) + " of BAR " + index + " of " + fn.bdf() + " runs past its 0x"
                    + Long.toHexString(bar.size()) + " bytes (vfio_pci_core_mmap)");
        }
        if (!fn.isPresent()) {
            throw new ErrnoException(Errno.ENODEV, "mmap of BAR " + index + " of " + fn.bdf()
                    + ": the function is not on its bus");
        }
        return new PfnMap(mm, fn, bar);
    }

    /** Links {@code r} as a new region of this mapping; the first one starts listening to resets and removal. */
    synchronized void link(Region r) {
        if (stopResets == null) {
            stopResets = fn.addResetListener(kind -> zap("reset (" + kind + ")", false));
            stopRemoval = fn.addRemoveListener(() -> zap(fn.bdf() + " left its bus", true));
            stopZaps = fn.addZapListener(why -> zap(why, false));
            if (!fn.isPresent()) {
                zap(fn.bdf() + " left its bus", true);
            }
        }
        regions.add(r);
    }

    /** {@code r} is replaced by {@code pieces} (split, munmap, exit); the last region gone stops the listening. */
    synchronized void replace(Region r, List<Region> pieces) {
        regions.addAll(pieces);
        regions.remove(r);
        if (regions.isEmpty() && stopResets != null) {
            stopResets.run();
            stopRemoval.run();
            stopZaps.run();
            stopResets = null;
            stopRemoval = null;
            stopZaps = null;
        }
    }

    /** {@code unmap_mapping_range} of every region: entries go, the next access faults (never again if forever). */
    private synchronized void zap(String why, boolean forever) {
        if (forever) {
            gone = why;
        }
        generation.incrementAndGet();
        for (Region r : new ArrayList<>(regions)) {
            mm.invalidateAndZap(r.start, r.end, InvalidateReason.CLEAR, true);
        }
        mm.tracer.emit(TraceKind.INVALIDATE, mm.name, -1, 0, "BAR " + bar.index() + " of " + fn.bdf()
                + " zapped: " + why + (forever ? ", for good" : ""));
    }

    /** Faults every page of {@code r} inside {@code [start, end)} in, so an access that fails changes nothing. */
    void populate(Region r, long start, long end, String what) {
        long first = Math.max(start, r.start) >>> PAGE_SHIFT;
        long last = (Math.min(end, r.end) - 1) >>> PAGE_SHIFT;
        for (long vpn = first; vpn <= last; vpn++) {
            present(r, vpn, what);
        }
    }

    /**
     * One CPU access of {@code n} bytes at {@code vaddr}, inside one page of {@code r}, from or into
     * {@code buf} at {@code bufOff}: the page is faulted in if a zap took it, then the BAR answers.
     */
    void access(Region r, long vaddr, MemorySegment buf, long bufOff, long n, boolean write) {
        present(r, vaddr >>> PAGE_SHIFT, write ? "store" : "load");
        long off = r.barOffset(vaddr);
        switch (bar.backing()) {
            case Bar.Mmio m -> mmio(m, off, buf, bufOff, n, write);
            case Bar.Memory mem -> {
                if (write) {
                    mem.write(off, buf.asSlice(bufOff, n));
                } else {
                    mem.read(off, buf.asSlice(bufOff, n));
                }
            }
        }
    }

    /** Register accesses as the CPU issues them: each naturally aligned, 8 bytes at most, little-endian. */
    private static void mmio(Bar.Mmio m, long off, MemorySegment buf, long bufOff, long n, boolean write) {
        long done = 0;
        while (done < n) {
            long at = off + done;
            int size = 8;
            while (size > 1 && (at % size != 0 || size > n - done)) {
                size >>= 1;
            }
            long b = bufOff + done;
            if (write) {
                long v = 0;
                for (int i = 0; i < size; i++) {
                    v |= (buf.get(ValueLayout.JAVA_BYTE, b + i) & 0xffL) << (8 * i);
                }
                m.write(at, size, v);
            } else {
                long v = m.read(at, size);
                for (int i = 0; i < size; i++) {
                    buf.set(ValueLayout.JAVA_BYTE, b + i, (byte) (v >>> (8 * i)));
                }
            }
            done += size;
        }
    }

    /** Faults page {@code vpn} of {@code r} in until its entry is present. */
    private void present(Region r, long vpn, String what) {
        while (mm.pte(vpn) == Pte.NONE) {
            fault(r, vpn, what);
        }
    }

    /**
     * {@code vfio_pci_mmap_huge_fault}: inserts the special entry of page {@code vpn} while the function decodes
     * memory, unless a zap came in since the checks.
     *
     * @throws ErrnoException {@code EFAULT} (the kernel's {@code SIGBUS}) when the mapping is zapped for good,
     *                        the function left its bus, or it does not decode memory
     */
    private void fault(Region r, long vpn, String what) {
        long gen = generation.get();
        long addr = vpn << PAGE_SHIFT;
        String why = gone;
        if (why == null && !fn.isPresent()) {
            why = fn.bdf() + " is not on its bus";
        }
        if (why == null && !fn.configSpace().memorySpaceEnabled()) {
            why = fn.bdf() + " does not decode memory (Memory Space Enable clear, D3hot or absent)";
        }
        if (why != null) {
            throw new ErrnoException(Errno.EFAULT, "SIGBUS: " + what + " at 0x" + Long.toHexString(addr) + " in "
                    + mm.name + " hits BAR " + bar.index() + " of " + fn.bdf() + ": " + why);
        }
        long pfn = (bar.address() + r.barOffset(addr)) >>> PAGE_SHIFT;
        mm.ptl.lock();
        try {
            if (generation.get() == gen && mm.pt.get(vpn) == Pte.NONE) {
                mm.pt.set(vpn, Pte.special(pfn));
            }
        } finally {
            mm.ptl.unlock();
        }
    }

    @Override
    public String toString() {
        return "mapping of BAR " + bar.index() + " of " + fn.bdf() + " in " + mm.name + " ("
                + (gone != null ? "zapped for good" : "live") + ")";
    }
}
