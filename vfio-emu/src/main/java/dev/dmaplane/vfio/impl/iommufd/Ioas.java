package dev.dmaplane.vfio.impl.iommufd;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IoPageTable;
import dev.dmaplane.vfio.impl.IoPageStore;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * An IO address space ({@code struct iommufd_ioas} over {@code struct io_pagetable}, {@code ioas.c} and
 * {@code io_pagetable.c}): the areas of {@link IoPageStore}, the reserved IOVA ranges (outside an attached domain's
 * aperture, a device's reserved regions) and the allowed ranges the user asked for; where an IOVA may be mapped,
 * and where the kernel places a mapping without {@code IOMMU_IOAS_MAP_FIXED_IOVA}. IOVAs are unsigned 64-bit values
 * and ranges inclusive, as the kernel's interval trees keep them. The alignment is the page size from the start
 * (the kernel's {@code iova_alignment} starts at 1 and becomes the page size with the first domain). Guarded by the
 * context's lock.
 */
final class Ioas extends IommufdObject {
    static final long PAGE = IoPageTable.PAGE_SIZE;
    /** {@code ULONG_MAX}. */
    static final long ULONG_MAX = -1L;

    /** A reserved range ({@code struct iopt_reserved}) and who reserved it. */
    private record Reserved(long start, long last, Object owner) {
    }

    /** One piece of a copy ({@code struct iopt_pages_list}): {@code length} bytes of {@code pages} from a page. */
    record PagesSlice(IoPageStore.Pages pages, int firstPage, long length) {
    }

    /** How often an unmap tells the accesses before it gives up ({@code iopt_unmap_iova_range}'s {@code tries}). */
    static final int UNMAP_TRIES = 100;

    final IoPageStore store;
    final List<Hwpt> hwpts = new ArrayList<>();
    /** The accesses attached here ({@code iopt->access_list}). */
    final List<Access> accesses = new ArrayList<>();
    /** Areas an unmap is taking away ({@code area->prevent_access}), by identity. */
    private final Set<IoPageStore.Area> preventAccess = Collections.newSetFromMap(new IdentityHashMap<>());
    private final List<Reserved> reserved = new ArrayList<>();
    private List<long[]> allowed = List.of();

    Ioas(int id, String who) {
        super(id, Type.IOAS);
        this.store = new IoPageStore("iommufd ioas " + id + " of " + who);
    }

    static boolean le(long a, long b) {
        return Long.compareUnsigned(a, b) <= 0;
    }

    static boolean intersects(long start, long last, long otherStart, long otherLast) {
        return le(start, otherLast) && le(otherStart, last);
    }

    /**
     * Where a mapping of {@code length} bytes goes ({@code iopt_alloc_area_pages}): {@code EINVAL} for a length of 0
     * or off the alignment; with {@code fixed}, {@code iova} as {@code iopt_check_iova} accepts it (off the alignment
     * {@code EINVAL}, wrapping {@code EOVERFLOW}, over a reserved range {@code EINVAL}, over a mapping
     * {@code EEXIST}); else the IOVA {@link #allocIova} picks.
     */
    long place(long iova, long length, long uptr, boolean fixed) {
        if (length == 0 || (length & (PAGE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: length %#x is 0 or not a multiple of the "
                    + "IOVA alignment %#x", this, length, PAGE));
        }
        if (!fixed) {
            return allocIova(uptr, length);
        }
        if ((iova & (PAGE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: IOVA %#x is not aligned to %#x", this, iova, PAGE));
        }
        long last = iova + length - 1;
        if (!le(iova, last)) {
            throw new ErrnoException(Errno.EOVERFLOW, String.format("%s: IOVA %#x + %#x wraps", this, iova, length));
        }
        for (Reserved r : reserved) {
            if (intersects(iova, last, r.start(), r.last())) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: IOVA %#x-%#x is reserved (%#x-%#x by %s)",
                        this, iova, last, r.start(), r.last(), r.owner()));
            }
        }
        List<IoPageStore.Area> over = store.overlapping(iova, last);
        if (!over.isEmpty()) {
            throw new ErrnoException(Errno.EEXIST, String.format("%s: IOVA %#x-%#x overlaps %s", this, iova, last,
                    over.getFirst()));
        }
        return iova;
    }

    /**
     * {@code iopt_alloc_iova}: the lowest IOVA from one page on, in the allowed ranges (all of them when none was
     * set), clear of reserved ranges and mappings, aligned to the length rounded up to a power of two or to the
     * user address's own alignment, whichever is smaller; never IOVA 0. {@code EOVERFLOW} for a length of half the
     * space or more, {@code ENOSPC} when nothing fits.
     */
    private long allocIova(long uptr, long length) {
        if (!le(length, (ULONG_MAX >>> 1) - 1)) {
            throw new ErrnoException(Errno.EOVERFLOW, String.format("%s: length %#x is too large to place", this,
                    length));
        }
        long pow2 = Long.highestOneBit(length) == length ? length : Long.highestOneBit(length) << 1;
        long align = uptr == 0 ? pow2 : Math.min(pow2, Long.lowestOneBit(uptr));
        if (align < PAGE) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: user address %#x gives an IOVA alignment below "
                    + "%#x", this, uptr, PAGE));
        }
        List<long[]> spans = allowed.isEmpty() ? List.of(new long[]{PAGE, ULONG_MAX - PAGE}) : allowed;
        for (long[] span : spans) {
            long start = le(span[0], PAGE) ? PAGE : span[0];
            long c = alignUp(start, align);
            while (c != 0 && le(start, c)) {
                long last = c + length - 1;
                if (!le(c, last) || !le(last, span[1])) {
                    break;
                }
                long[] used = firstUsed(c, last);
                if (used == null) {
                    return c;
                }
                if (used[1] == ULONG_MAX) {
                    break;
                }
                c = alignUp(used[1] + 1, align);
            }
        }
        throw new ErrnoException(Errno.ENOSPC, String.format("%s: no free IOVA range of %#x bytes", this, length));
    }

    private static long alignUp(long v, long align) {
        return (v + align - 1) & -align;
    }

    /** The first reserved range or mapping that intersects {@code [start, last]}, as {@code {start, last}}. */
    private long[] firstUsed(long start, long last) {
        long[] best = null;
        for (Reserved r : reserved) {
            if (intersects(start, last, r.start(), r.last()) && (best == null || le(r.last(), best[1]))) {
                best = new long[]{r.start(), r.last()};
            }
        }
        for (IoPageStore.Area a : store.overlapping(start, last)) {
            if (best == null || le(a.last(), best[1])) {
                best = new long[]{a.iova(), a.last()};
            }
        }
        return best;
    }

    /**
     * One {@code iopt_unmap_iova_range} in progress: where it resumes ({@code start}), the bytes unmapped so far, and
     * how often the accesses were told about the area it waits for ({@code tries}). Owned by the thread of the unmap.
     */
    static final class Unmapping {
        private long start;
        private final long last;
        private long bytes;
        private int tries;

        private Unmapping(long first, long last) {
            this.start = first;
            this.last = last;
        }

        long bytes() {
            return bytes;
        }
    }

    /**
     * What the accesses must be told with the context's lock dropped ({@code iommufd_access_notify_unmap}): an area
     * one of them pins, and the accesses attached when it was found.
     */
    record Notice(long iova, long length, List<Access> accesses) {
        void tell() {
            for (Access access : accesses) {
                access.notifyUnmap(iova, length);
            }
        }
    }

    /**
     * The checks {@code iopt_unmap_iova_range} makes before it takes anything: a mapping that starts before or ends
     * after {@code [first, last]} would be split ({@code ENOENT}, nothing unmapped), and a range holding no mapping
     * is {@code ENOENT} unless {@code emptyIsDone} ({@code iopt_unmap_all}). Run {@link #unmapStep} until it says done.
     */
    Unmapping beginUnmap(long first, long last, boolean emptyIsDone) {
        List<IoPageStore.Area> over = store.overlapping(first, last);
        checkNoSplit(over, first, last);
        if (over.isEmpty() && !emptyIsDone) {
            throw new ErrnoException(Errno.ENOENT, String.format("%s: nothing is mapped in %#x-%#x", this, first, last));
        }
        return new Unmapping(first, last);
    }

    /**
     * The part of {@code iopt_unmap_iova_range} that runs with the locks held: unmaps the areas of {@code u} in order
     * until one an access has pages of pinned; that area is marked {@code prevent_access} (no new pin or copy
     * through it) and returned, for the caller to tell the accesses with the context's lock dropped, as the kernel
     * drops {@code iova_rwsem} and {@code domains_rwsem} before {@code iommufd_access_notify_unmap}, then to call
     * again. After {@value #UNMAP_TRIES} tells about one area the next call fails with {@code EDEADLOCK}
     * ({@code EDEADLK}, 35, on x86-64), as the kernel does: the areas before it are unmapped then, the area and the
     * rest are not.
     *
     * @return the area to tell the accesses about, or null when every area of the range is unmapped
     */
    Notice unmapStep(Unmapping u) {
        if (u.tries > UNMAP_TRIES) {
            throw new ErrnoException(Errno.EDEADLK, String.format("EDEADLOCK: %s: %#x is still pinned by an access "
                    + "after %d unmap callbacks; %#x bytes before it were unmapped", this, u.start, UNMAP_TRIES, u.bytes));
        }
        List<IoPageStore.Area> over = store.overlapping(u.start, u.last);
        checkNoSplit(over, u.start, u.last);
        for (IoPageStore.Area a : over) {
            if (pinnedByAccess(a.iova(), a.last())) {
                if (a.iova() != u.start) {
                    u.tries = 0;
                }
                u.start = a.iova();
                u.tries++;
                preventAccess.add(a);
                return new Notice(a.iova(), a.size(), List.copyOf(accesses));
            }
            preventAccess.remove(a);
            u.bytes += store.unmap(a);
        }
        return null;
    }

    private void checkNoSplit(List<IoPageStore.Area> over, long first, long last) {
        for (IoPageStore.Area a : over) {
            if (!le(first, a.iova()) || !le(a.last(), last)) {
                throw new ErrnoException(Errno.ENOENT, String.format("%s: unmapping %#x-%#x would split %s", this,
                        first, last, a));
            }
        }
    }

    /**
     * {@link #beginUnmap} and {@link #unmapStep} with the accesses told in between on this thread, for callers that
     * hold the context's lock and know no access is attached (destroy, release).
     *
     * @return the bytes unmapped
     */
    long unmap(long first, long last) {
        Unmapping u = beginUnmap(first, last, false);
        for (Notice n = unmapStep(u); n != null; n = unmapStep(u)) {
            n.tell();
        }
        return u.bytes();
    }

    /** {@code iopt_unmap_all}: every mapping, as {@link #unmap} of the whole space; 0 bytes when there is none. */
    long unmapAll() {
        return store.count() == 0 ? 0 : unmap(0, ULONG_MAX);
    }

    /** Whether an access of this IOAS has pages of {@code [first, last]} pinned ({@code area->num_accesses}). */
    private boolean pinnedByAccess(long first, long last) {
        for (Access access : accesses) {
            if (access.pins(first, last)) {
                return true;
            }
        }
        return false;
    }

    /** Whether {@code a} is being unmapped: no access may pin or copy through it ({@code area->prevent_access}). */
    boolean preventsAccess(IoPageStore.Area a) {
        return preventAccess.contains(a);
    }

    /**
     * {@code iopt_get_pages}: the pages behind {@code [iova, iova + length)}, which contiguous mappings must cover
     * ({@code ENOENT} otherwise), each slice holding a reference.
     */
    List<PagesSlice> pages(long iova, long length) {
        long last = iova + length - 1;
        List<PagesSlice> out = new ArrayList<>();
        long cur = iova;
        for (IoPageStore.Area a : store.overlapping(iova, last)) {
            if (a.iova() != cur && !(out.isEmpty() && le(a.iova(), cur))) {
                break;
            }
            long end = le(a.last(), last) ? a.last() : last;
            int first = a.firstPage() + (int) ((cur - a.iova()) / PAGE);
            out.add(new PagesSlice(a.pages(), first, end - cur + 1));
            cur = end + 1;
            if (end == last) {
                break;
            }
        }
        if (out.isEmpty() || out.stream().mapToLong(PagesSlice::length).sum() != length) {
            throw new ErrnoException(Errno.ENOENT, String.format("%s: %#x-%#x is not mapped contiguously", this,
                    iova, last));
        }
        out.forEach(s -> s.pages().get());
        return out;
    }

    /** Whether contiguous mappings cover {@code [iova, last]} ({@code iopt_area_contig_done}). */
    boolean covered(long iova, long last) {
        long cur = iova;
        for (IoPageStore.Area a : store.overlapping(iova, last)) {
            if (!le(a.iova(), cur)) {
                return false;
            }
            if (!le(a.last(), last) || a.last() == last) {
                return true;
            }
            cur = a.last() + 1;
        }
        return false;
    }

    /**
     * {@code iopt_reserve_iova}: {@code EADDRINUSE} when a mapping or an allowed range intersects
     * {@code [start, last]}.
     */
    void reserve(long start, long last, Object owner) {
        if (!store.overlapping(start, last).isEmpty()) {
            throw new ErrnoException(Errno.EADDRINUSE, String.format("%s: %#x-%#x, reserved by %s, is mapped: %s",
                    this, start, last, owner, store.overlapping(start, last).getFirst()));
        }
        for (long[] a : allowed) {
            if (intersects(start, last, a[0], a[1])) {
                throw new ErrnoException(Errno.EADDRINUSE, String.format("%s: %#x-%#x, reserved by %s, is in the "
                        + "allowed range %#x-%#x", this, start, last, owner, a[0], a[1]));
            }
        }
        reserved.add(new Reserved(start, last, owner));
    }

    /** {@code iopt_remove_reserved_iova}: what {@code owner} reserved. */
    void unreserve(Object owner) {
        reserved.removeIf(r -> r.owner() == owner);
    }

    /**
     * {@code iopt_set_allow_iova}: replaces the allowed ranges; {@code EADDRINUSE} (nothing changed) when one
     * intersects a reserved range.
     */
    void allow(List<long[]> ranges) {
        for (long[] a : ranges) {
            for (Reserved r : reserved) {
                if (intersects(a[0], a[1], r.start(), r.last())) {
                    throw new ErrnoException(Errno.EADDRINUSE, String.format("%s: allowed range %#x-%#x intersects "
                            + "%#x-%#x reserved by %s", this, a[0], a[1], r.start(), r.last(), r.owner()));
                }
            }
        }
        List<long[]> sorted = new ArrayList<>(ranges);
        sorted.sort((x, y) -> Long.compareUnsigned(x[0], y[0]));
        allowed = List.copyOf(sorted);
    }

    /** The holes of the reserved ranges over the whole space ({@code IOMMU_IOAS_IOVA_RANGES}), in order. */
    List<long[]> iovaRanges() {
        List<Reserved> sorted = new ArrayList<>(reserved);
        sorted.sort(Comparator.comparing(Reserved::start, Long::compareUnsigned));
        List<long[]> holes = new ArrayList<>();
        long next = 0;
        boolean done = false;
        for (Reserved r : sorted) {
            if (done) {
                break;
            }
            if (Long.compareUnsigned(r.start(), next) > 0) {
                holes.add(new long[]{next, r.start() - 1});
            }
            if (le(next, r.last())) {
                if (r.last() == ULONG_MAX) {
                    done = true;
                } else {
                    next = r.last() + 1;
                }
            }
        }
        if (!done) {
            holes.add(new long[]{next, ULONG_MAX});
        }
        return holes;
    }
}
