package dev.dmaplane.vfio.impl.iommufd;

import dev.dmaplane.device.FauxDevice;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.iommu.IoPageTable;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.vfio.impl.DmaBufFile;
import dev.dmaplane.vfio.impl.IoPageStore;
import dev.dmaplane.vfio.impl.MemfdFile;
import dev.dmaplane.vfio.impl.VfioFile;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntFunction;

import static dev.dmaplane.vfio.VfioLayouts.U64;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;

/**
 * The IOAS commands of an iommufd context ({@code drivers/iommu/iommufd/ioas.c}): IOMMU_IOAS_ALLOC,
 * IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_ALLOW_IOVAS, IOMMU_IOAS_MAP, IOMMU_IOAS_MAP_FILE, IOMMU_IOAS_COPY and
 * IOMMU_IOAS_UNMAP, on the objects of its {@link IommufdCtx}. Each runs under the context's lock, as its
 * {@code IoctlTable} entry takes it, except IOMMU_IOAS_UNMAP, which takes it for each step itself.
 */
final class IoasCommands {
    private static final long PAGE = IoPageTable.PAGE_SIZE;

    private final IommufdCtx ctx;
    private final String who;
    private final AddressSpace mm;
    private final IommufdCtx.Account account;
    private final IntFunction<VfioFile> files;
    /** The device iommufd attaches to dma-bufs with ({@code iommufd_global_device}). */
    private final FauxDevice globalDevice;

    IoasCommands(IommufdCtx ctx, String who, AddressSpace mm, IommufdCtx.Account account,
                 IntFunction<VfioFile> files, FauxDevice globalDevice) {
        this.ctx = ctx;
        this.who = who;
        this.mm = mm;
        this.account = account;
        this.files = files;
        this.globalDevice = globalDevice;
    }

    /** {@code iommufd_ioas_alloc_ioctl}: {@code EOPNOTSUPP} for any flag. */
    long alloc(Ucmd u) {
        int flags = u.u32(IOAS_ALLOC, "flags");
        if (flags != 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "IOMMU_IOAS_ALLOC: unknown flags " + Integer.toHexString(flags));
        }
        Ioas ioas = ctx.allocIoas();
        u.setU32(IOAS_ALLOC, "out_ioas_id", ioas.id);
        u.respond();
        return 0;
    }

    /**
     * {@code iommufd_ioas_iova_ranges}: the usable ranges written to {@code allowed_iovas} as far as
     * {@code num_iovas} goes, {@code num_iovas} set to how many there are, and {@code EMSGSIZE} (after the structure
     * is written back) when that is more than the array holds.
     */
    long iovaRanges(Ucmd u) {
        u.reserved0(IOAS_IOVA_RANGES, "IOMMU_IOAS_IOVA_RANGES");
        Ioas ioas = ctx.ioasFor(u.u32(IOAS_IOVA_RANGES, "ioas_id"), "IOMMU_IOAS_IOVA_RANGES");
        long max = Integer.toUnsignedLong(u.u32(IOAS_IOVA_RANGES, "num_iovas"));
        long ptr = u.u64(IOAS_IOVA_RANGES, "allowed_iovas");
        List<long[]> ranges = ioas.iovaRanges();
        for (int i = 0; i < ranges.size() && i < max; i++) {
            MemorySegment r = MemorySegment.ofArray(new byte[(int) IOVA_RANGE.byteSize()]);
            r.set(U64, 0, ranges.get(i)[0]);
            r.set(U64, 8, ranges.get(i)[1]);
            mm.write(ptr + i * IOVA_RANGE.byteSize(), r);
        }
        u.setU32(IOAS_IOVA_RANGES, "num_iovas", ranges.size());
        u.setU64(IOAS_IOVA_RANGES, "out_iova_alignment", PAGE);
        u.respond();
        if (ranges.size() > max) {
            throw new ErrnoException(Errno.EMSGSIZE, String.format("IOMMU_IOAS_IOVA_RANGES: %d ranges, room for %d",
                    ranges.size(), max));
        }
        return 0;
    }

    /**
     * {@code iommufd_ioas_allow_iovas}: the ranges read from {@code allowed_iovas}; one whose start is not below
     * its last, or that overlaps another, is {@code EINVAL}; one over a reserved range {@code EADDRINUSE}.
     */
    long allowIovas(Ucmd u) {
        u.reserved0(IOAS_ALLOW_IOVAS, "IOMMU_IOAS_ALLOW_IOVAS");
        Ioas ioas = ctx.ioasFor(u.u32(IOAS_ALLOW_IOVAS, "ioas_id"), "IOMMU_IOAS_ALLOW_IOVAS");
        long n = Integer.toUnsignedLong(u.u32(IOAS_ALLOW_IOVAS, "num_iovas"));
        long ptr = u.u64(IOAS_ALLOW_IOVAS, "allowed_iovas");
        List<long[]> ranges = new ArrayList<>();
        for (long i = 0; i < n; i++) {
            MemorySegment r = MemorySegment.ofArray(new byte[(int) IOVA_RANGE.byteSize()]);
            mm.read(ptr + i * IOVA_RANGE.byteSize(), r);
            long start = r.get(U64, 0);
            long last = r.get(U64, 8);
            if (Ioas.le(last, start)) {
                throw new ErrnoException(Errno.EINVAL, String.format("IOMMU_IOAS_ALLOW_IOVAS: range %d, %#x-%#x, "
                        + "does not end after its start", i, start, last));
            }
            for (long[] o : ranges) {
                if (Ioas.intersects(start, last, o[0], o[1])) {
                    throw new ErrnoException(Errno.EINVAL, String.format("IOMMU_IOAS_ALLOW_IOVAS: range %#x-%#x "
                            + "overlaps %#x-%#x", start, last, o[0], o[1]));
                }
            }
            ranges.add(new long[]{start, last});
        }
        ioas.allow(ranges);
        return 0;
    }

    /** {@code conv_iommu_prot}; {@code EINVAL} for neither READABLE nor WRITEABLE. */
    private static int prot(int flags, String what) {
        if ((flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)) == 0) {
            throw new ErrnoException(Errno.EINVAL, what + ": neither READABLE nor WRITEABLE");
        }
        return ((flags & IOMMU_IOAS_MAP_READABLE) != 0 ? IoPageTable.PROT_READ : 0)
                | ((flags & IOMMU_IOAS_MAP_WRITEABLE) != 0 ? IoPageTable.PROT_WRITE : 0);
    }

    private static void mapFlags(int flags, String what) {
        int known = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;
        if ((flags & ~known) != 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, what + ": unknown flags " + Integer.toHexString(flags & ~known));
        }
    }

    private static void notUlongMax(long v, String field, String what) {
        if (v == Ioas.ULONG_MAX) {
            throw new ErrnoException(Errno.EOVERFLOW, what + ": " + field + " is ULONG_MAX");
        }
    }

    /**
     * {@code iommufd_ioas_map}: flags and {@code __reserved} ({@code EOPNOTSUPP}), IOVA or length of
     * {@code ULONG_MAX} ({@code EOVERFLOW}), no READABLE/WRITEABLE ({@code EINVAL}), the IOAS ({@code ENOENT}), the
     * placement ({@link Ioas#place}), a user address off the page size ({@code EINVAL}); then the user memory is
     * pinned {@code FOLL_LONGTERM} ({@code EFAULT}) and charged to {@code locked_vm} ({@code ENOMEM} past
     * {@code RLIMIT_MEMLOCK}) and mapped into every domain of the IOAS. The IOVA is written back.
     */
    long map(Ucmd u) {
        int flags = u.u32(IOAS_MAP, "flags");
        String what = "IOMMU_IOAS_MAP";
        mapFlags(flags, what);
        u.reserved0(IOAS_MAP, what);
        long uptr = u.u64(IOAS_MAP, "user_va");
        long length = u.u64(IOAS_MAP, "length");
        long iova = u.u64(IOAS_MAP, "iova");
        notUlongMax(iova, "iova", what);
        notUlongMax(length, "length", what);
        int prot = prot(flags, what);
        Ioas ioas = ctx.ioasFor(u.u32(IOAS_MAP, "ioas_id"), what);
        if (length != 0 && Long.compareUnsigned(uptr + length - 1, uptr) < 0) {
            throw new ErrnoException(Errno.EOVERFLOW, String.format("%s: user_va %#x + %#x wraps", what, uptr, length));
        }
        long at = ioas.place(iova, length, uptr, (flags & IOMMU_IOAS_MAP_FIXED_IOVA) != 0);
        if ((uptr & (PAGE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: user_va %#x is not aligned to the IOVA "
                    + "alignment %#x", what, uptr, PAGE));
        }
        IoPageStore.Pages pages = pinUser(uptr, length, (prot & IoPageTable.PROT_WRITE) != 0);
        try {
            ioas.store.map(pages, 0, at, length, uptr, prot);
        } catch (RuntimeException e) {
            pages.put(false);
            throw e;
        }
        u.setU64(IOAS_MAP, "iova", at);
        u.respond();
        return 0;
    }

    /** {@code iopt_alloc_pages} filled: the pin, charged to {@code locked_vm}; released with the accounting. */
    private IoPageStore.Pages pinUser(long uptr, long length, boolean write) {
        IoPageStore.Pages raw = IoPageStore.Pages.pin(mm, uptr, length, write);
        try {
            account.lockAcct(length);
        } catch (RuntimeException e) {
            raw.put(false);
            throw e;
        }
        int n = raw.pageCount();
        account.pinned(n);
        return raw.then(() -> {
            account.lockAcct(-length);
            account.pinned(-n);
        });
    }

    /**
     * {@code iommufd_ioas_map_file}: as {@link #map}, of {@code length} bytes of the file behind {@code fd} from
     * byte {@code start}: the fd must be open ({@code EBADF}) and a memfd (other files {@code EINVAL}, as
     * {@code memfd_pin_folios} answers), {@code start} on a page ({@code EINVAL}) and the range inside the file
     * ({@code EFAULT}); its pages are pinned ({@code memfd_pin_folios}), so they outlive a truncate until unmapped.
     * A dma-buf ({@code iopt_map_file_pages} finding one with {@code dma_buf_get}) is mapped through its physical
     * ranges ({@link DmabufPages}): vfio-pci's BAR exports as in recent kernels, and a GPU's VRAM export beyond them;
     * other exporters {@code EOPNOTSUPP}, a revoked buffer {@code ENODEV}, a range past the buffer {@code EINVAL}.
     * A revoke while mapped unmaps the IOVA range from every domain and leaves the area to the user's unmap.
     */
    long mapFile(Ucmd u) {
        int flags = u.u32(IOAS_MAP_FILE, "flags");
        String what = "IOMMU_IOAS_MAP_FILE";
        mapFlags(flags, what);
        long start = u.u64(IOAS_MAP_FILE, "start");
        long length = u.u64(IOAS_MAP_FILE, "length");
        long iova = u.u64(IOAS_MAP_FILE, "iova");
        notUlongMax(iova, "iova", what);
        notUlongMax(length, "length", what);
        int prot = prot(flags, what);
        Ioas ioas = ctx.ioasFor(u.u32(IOAS_MAP_FILE, "ioas_id"), what);
        int fd = u.u32(IOAS_MAP_FILE, "fd");
        VfioFile f = files.apply(fd);
        if (length != 0 && Long.compareUnsigned(start + length - 1, start) < 0) {
            throw new ErrnoException(Errno.EOVERFLOW, String.format("%s: start %#x + %#x wraps", what, start, length));
        }
        long at = ioas.place(iova, length, 0, (flags & IOMMU_IOAS_MAP_FIXED_IOVA) != 0);
        if ((start & (PAGE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: start %#x is not aligned to %#x", what, start,
                    PAGE));
        }
        if (f instanceof DmaBufFile dmabuf) {
            DmabufPages.map(dmabuf.buffer(), globalDevice, start, length, (prot & IoPageTable.PROT_WRITE) != 0, who,
                    pages -> ioas.store.map(pages, 0, at, length, 0, prot));
            u.setU64(IOAS_MAP_FILE, "iova", at);
            u.respond();
            return 0;
        }
        if (!(f instanceof MemfdFile memfd)) {
            throw new ErrnoException(Errno.EINVAL, what + ": fd " + fd + " is " + f + ", not a memfd or a dma-buf");
        }
        IoPageStore.Pages pages = pinFile(memfd.inode(), start, length);
        try {
            ioas.store.map(pages, 0, at, length, 0, prot);
        } catch (RuntimeException e) {
            pages.put(false);
            throw e;
        }
        u.setU64(IOAS_MAP_FILE, "iova", at);
        u.respond();
        return 0;
    }

    /** {@code memfd_pin_folios} of the file's pages, charged to {@code locked_vm} as a user pin is. */
    private IoPageStore.Pages pinFile(Inode inode, long start, long length) {
        long first = start / PAGE;
        long count = length / PAGE;
        if (count > Integer.MAX_VALUE) {
            throw new ErrnoException(Errno.EINVAL, "IOMMU_IOAS_MAP_FILE: " + count + " pages are too many");
        }
        long[] pfns = inode.pinPages(first, (int) count);
        HostMemory mem = inode.fs().memory();
        try {
            account.lockAcct(length);
        } catch (RuntimeException e) {
            for (long pfn : pfns) {
                mem.unpinPage(pfn);
            }
            throw e;
        }
        account.pinned(pfns.length);
        long[] phys = new long[pfns.length];
        for (int i = 0; i < pfns.length; i++) {
            phys[i] = pfns[i] << HostMemory.PAGE_SHIFT;
        }
        return new IoPageStore.Pages(phys, true, dirty -> {
            if (dirty) {
                inode.unpinPagesDirty(first, pfns);
            } else {
                for (long pfn : pfns) {
                    mem.unpinPage(pfn);
                }
            }
            account.lockAcct(-length);
            account.pinned(-pfns.length);
        });
    }

    /**
     * {@code iommufd_ioas_copy}: the pages behind {@code [src_iova, src_iova + length)} of the source IOAS (contiguous
     * mappings, {@code ENOENT} otherwise) mapped in the destination IOAS without pinning them again; a writable copy
     * of pages pinned read-only is {@code EPERM}.
     */
    long copy(Ucmd u) {
        String what = "IOMMU_IOAS_COPY";
        int flags = u.u32(IOAS_COPY, "flags");
        mapFlags(flags, what);
        long length = u.u64(IOAS_COPY, "length");
        long dstIova = u.u64(IOAS_COPY, "dst_iova");
        long srcIova = u.u64(IOAS_COPY, "src_iova");
        notUlongMax(length, "length", what);
        notUlongMax(srcIova, "src_iova", what);
        notUlongMax(dstIova, "dst_iova", what);
        int prot = prot(flags, what);
        Ioas src = ctx.ioasFor(u.u32(IOAS_COPY, "src_ioas_id"), what);
        if (length == 0 || ((srcIova | length) & (PAGE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: src_iova %#x length %#x: empty or not aligned "
                    + "to %#x", what, srcIova, length, PAGE));
        }
        if (Long.compareUnsigned(srcIova + length - 1, srcIova) < 0) {
            throw new ErrnoException(Errno.EOVERFLOW, String.format("%s: src_iova %#x + %#x wraps", what, srcIova,
                    length));
        }
        List<Ioas.PagesSlice> slices = src.pages(srcIova, length);
        List<IoPageStore.Area> done = new ArrayList<>();
        Ioas dst = null;
        try {
            dst = ctx.ioasFor(u.u32(IOAS_COPY, "dst_ioas_id"), what);
            long at = dst.place(dstIova, length, 0, (flags & IOMMU_IOAS_MAP_FIXED_IOVA) != 0);
            long iova = at;
            for (Ioas.PagesSlice s : slices) {
                done.add(dst.store.map(s.pages(), s.firstPage(), iova, s.length(), 0, prot));
                iova += s.length();
            }
            u.setU64(IOAS_COPY, "dst_iova", at);
            u.respond();
            return 0;
        } catch (RuntimeException e) {
            for (IoPageStore.Area a : done) {
                dst.store.unmap(a);
            }
            for (int i = done.size(); i < slices.size(); i++) {
                slices.get(i).pages().put(false);
            }
            throw e;
        }
    }

    /**
     * {@code iommufd_ioas_unmap}: IOVA 0 with length {@code U64_MAX} unmaps everything (0 bytes when nothing is
     * mapped); otherwise IOVA or length {@code ULONG_MAX} is {@code EOVERFLOW}, length 0 {@code EINVAL}, a range
     * that wraps {@code EOVERFLOW}, and {@link Ioas#beginUnmap}'s {@code ENOENT}. The bytes unmapped are written back
     * into {@code length}.
     * <p>
     * The context's lock is held for each step of {@code iopt_unmap_iova_range} and dropped while the accesses are
     * told to unpin ({@link Ioas.Notice#tell}), so a driver may unpin from another thread than the unmap's, as the
     * kernel drops its locks before {@code iommufd_access_notify_unmap}. The IOAS counts one more user meanwhile, as
     * the ioctl's reference on the object keeps {@code IOMMU_DESTROY} from taking it.
     */
    long unmap(Ucmd u) {
        String what = "IOMMU_IOAS_UNMAP";
        Ioas ioas;
        synchronized (ctx) {
            ioas = ctx.ioasFor(u.u32(IOAS_UNMAP, "ioas_id"), what);
            ioas.users++;
        }
        try {
            Ioas.Unmapping job = beginUnmap(u, ioas, what);
            while (true) {
                Ioas.Notice notice;
                synchronized (ctx) {
                    notice = ioas.unmapStep(job);
                }
                if (notice == null) {
                    break;
                }
                notice.tell();
            }
            u.setU64(IOAS_UNMAP, "length", job.bytes());
            u.respond();
            return 0;
        } finally {
            synchronized (ctx) {
                ioas.users--;
            }
        }
    }

    /** The unmap's checks and its first step, under the context's lock. */
    private Ioas.Unmapping beginUnmap(Ucmd u, Ioas ioas, String what) {
        synchronized (ctx) {
            long iova = u.u64(IOAS_UNMAP, "iova");
            long length = u.u64(IOAS_UNMAP, "length");
            if (iova == 0 && length == Ioas.ULONG_MAX) {
                return ioas.beginUnmap(0, Ioas.ULONG_MAX, true);
            }
            notUlongMax(iova, "iova", what);
            notUlongMax(length, "length", what);
            if (length == 0) {
                throw new ErrnoException(Errno.EINVAL, what + ": length 0");
            }
            long last = iova + length - 1;
            if (!Ioas.le(iova, last)) {
                throw new ErrnoException(Errno.EOVERFLOW, String.format("%s: %#x + %#x wraps", what, iova, length));
            }
            return ioas.beginUnmap(iova, last, false);
        }
    }
}
