package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.mm.Vma;

import java.lang.foreign.MemorySegment;

/**
 * Pinned, device-reachable memory of a user-space driver, in 2 MiB units as SPDK takes it from hugepages
 * ({@code spdk_dma_zmalloc}, {@code lib/env_dpdk/memory.c}): anonymous memory of the process, touched, then mapped
 * for the device at IOVA = VA through the {@link DmaFrontEnd} (which pins it long-term). The CPU side reaches each
 * 4 KiB page through its frame, resolved once after the pin (the pin keeps frame and mapping together, as a locked
 * hugepage does), so queue entries and data are loads and stores, not system calls.
 * <p>
 * The addresses are chosen in {@link #LOW_START}..{@link #LOW_END}, as DPDK's {@code --base-virtaddr} and
 * {@code rte_mem_check_dma_mask} keep IOVA = VA memory inside what the device can address: vfio-pci never widens a
 * function's DMA mask, so the device's bus master reaches 32-bit addresses only (outside the x86 MSI window).
 */
public final class DmaRegion implements AutoCloseable {
    /** The unit regions are made of: a 2 MiB hugepage. */
    public static final long UNIT = HostMemory.HUGE_PAGE_SIZE;
    /** The page the device's PRPs and the CPU's views work in. */
    public static final long PAGE = HostMemory.PAGE_SIZE;

    /** The lowest address a region is placed at. */
    public static final long LOW_START = 1L << 30;
    /** The end of the addresses regions are placed in: under the PCI hole and the MSI window. */
    public static final long LOW_END = 3L << 30;

    private final DmaFrontEnd frontEnd;
    private final AddressSpace mm;
    private final long va;
    private final long length;
    private final MemorySegment[] pages;
    private boolean closed;

    private DmaRegion(DmaFrontEnd frontEnd, AddressSpace mm, long va, long length, MemorySegment[] pages) {
        this.frontEnd = frontEnd;
        this.mm = mm;
        this.va = va;
        this.length = length;
        this.pages = pages;
    }

    /**
     * {@code bytes} (rounded up to 2 MiB) of zeroed memory, mapped for the device at IOVA = VA. Nothing stays
     * mapped or pinned when it fails.
     *
     * @throws ErrnoException {@code EINVAL} for {@code bytes} below 1; the front end's {@code ENOMEM} over
     *                        {@code RLIMIT_MEMLOCK}
     */
    public static DmaRegion allocate(DmaFrontEnd frontEnd, long bytes) {
        ErrnoException.requireNonNull(frontEnd, "DmaRegion.allocate: front end");
        if (bytes < 1) {
            throw new ErrnoException(Errno.EINVAL, "DmaRegion.allocate: " + bytes + " bytes");
        }
        long length = (bytes + UNIT - 1) / UNIT * UNIT;
        AddressSpace mm = frontEnd.user().mm();
        long va = mm.mmapAnonymousFixed(lowGap(mm, length), length, Prot.PROT_READ | Prot.PROT_WRITE);
        boolean mapped = false;
        try {
            mm.write(va, MemorySegment.ofArray(new byte[(int) length])); // touch: every page present and private
            frontEnd.map(va, length);
            mapped = true;
            MemorySegment[] pages = new MemorySegment[(int) (length / PAGE)];
            for (int i = 0; i < pages.length; i++) {
                long at = va + i * PAGE;
                long pa = mm.physAddr(at).orElseThrow(() -> new ErrnoException(Errno.EFAULT,
                        "DmaRegion: page at 0x" + Long.toHexString(at) + " not present after the pin"));
                pages[i] = mm.memory().slice(pa, PAGE);
            }
            return new DmaRegion(frontEnd, mm, va, length, pages);
        } catch (RuntimeException e) {
            if (mapped) {
                frontEnd.unmap(va, length);
            }
            mm.munmap(va, length);
            throw e;
        }
    }

    /** The first gap of {@code length} bytes between the process's mappings in LOW_START..LOW_END ({@code ENOMEM}). */
    private static long lowGap(AddressSpace mm, long length) {
        long at = LOW_START;
        for (Vma v : mm.vmas()) {
            if (v.end() <= at) {
                continue;
            }
            if (v.start() >= at + length) {
                break;
            }
            at = (v.end() + UNIT - 1) / UNIT * UNIT;
        }
        if (at + length > LOW_END) {
            throw new ErrnoException(Errno.ENOMEM, "DmaRegion: no " + length + "-byte gap left in 0x"
                    + Long.toHexString(LOW_START) + "..0x" + Long.toHexString(LOW_END));
        }
        return at;
    }

    /** The user address of the region, which is also its IOVA. */
    public long va() {
        return va;
    }

    /** Bytes in the region. */
    public long length() {
        return length;
    }

    /** The IOVA of {@code offset} into the region. */
    public long iova(long offset) {
        return va + offset;
    }

    /** The CPU's view of the 4 KiB page holding {@code offset}. */
    public MemorySegment page(long offset) {
        return pages[(int) (offset / PAGE)];
    }

    /** Copies {@code src} into the region at {@code offset}, across pages. */
    public void write(long offset, MemorySegment src) {
        check(offset, src.byteSize());
        long done = 0;
        while (done < src.byteSize()) {
            long at = offset + done;
            long n = Math.min(src.byteSize() - done, PAGE - at % PAGE);
            MemorySegment.copy(src, done, pages[(int) (at / PAGE)], at % PAGE, n);
            done += n;
        }
    }

    /** Copies the region's bytes at {@code offset} into {@code dst}, across pages. */
    public void read(long offset, MemorySegment dst) {
        check(offset, dst.byteSize());
        long done = 0;
        while (done < dst.byteSize()) {
            long at = offset + done;
            long n = Math.min(dst.byteSize() - done, PAGE - at % PAGE);
            MemorySegment.copy(pages[(int) (at / PAGE)], at % PAGE, dst, done, n);
            done += n;
        }
    }

    private void check(long offset, long n) {
        if (offset < 0 || n < 0 || offset > length - n) {
            throw new ErrnoException(Errno.EINVAL, "DmaRegion at 0x" + Long.toHexString(va) + ": " + n
                    + " bytes at offset " + offset + " outside its " + length);
        }
    }

    /** Unmaps the region from the device (unpinning it) and from the process. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            if (frontEnd.isOpen()) {
                frontEnd.unmap(va, length);
            }
        } finally {
            if (!mm.isClosed()) {
                mm.munmap(va, length);
            }
        }
    }
}
