package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;

import java.lang.foreign.MemorySegment;

/**
 * Pinned, device-reachable memory of a user-space driver, in 2 MiB units as SPDK takes it from hugepages
 * ({@code spdk_dma_zmalloc}, {@code lib/env_dpdk/memory.c}): anonymous memory of the process, touched, then mapped
 * for the device at IOVA = VA through the {@link DmaFrontEnd} (which pins it long-term). The CPU side reaches each
 * 4 KiB page through its frame, resolved once after the pin (the pin keeps frame and mapping together, as a locked
 * hugepage does), so queue entries and data are loads and stores, not system calls.
 * <p>
 * The addresses are the process's ordinary top-down mmap addresses, aligned to 2 MiB as hugepages are (DPDK's
 * {@code eal_get_virtual_area} maps more and trims the excess): the device drives 64 address bits and no kernel
 * driver's DMA mask applies to a VFIO user, so IOVA = VA is bounded only by the IOMMU's usable IOVA ranges.
 */
public final class DmaRegion implements AutoCloseable {
    /** The unit regions are made of: a 2 MiB hugepage. */
    public static final long UNIT = HostMemory.HUGE_PAGE_SIZE;
    /** The page the device's PRPs and the CPU's views work in. */
    public static final long PAGE = HostMemory.PAGE_SIZE;

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
        long va = mapAligned(mm, length);
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

    /** {@code length} bytes of anonymous memory at a 2 MiB boundary: one more unit mapped, the excess unmapped. */
    private static long mapAligned(AddressSpace mm, long length) {
        long raw = mm.mmapAnonymous(length + UNIT, Prot.PROT_READ | Prot.PROT_WRITE);
        long va = (raw + UNIT - 1) / UNIT * UNIT;
        if (va > raw) {
            mm.munmap(raw, va - raw);
        }
        if (raw + UNIT > va) {
            mm.munmap(va + length, raw + UNIT - va);
        }
        return va;
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
