package dev.dmaplane.mem;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * The host's physical RAM: page frames numbered by physical address, handed out by a buddy allocator of orders 0 (4 KiB) to
 * {@link #MAX_ORDER} (2 MiB, a huge page), each with a reference count and a pin count as {@code struct page}
 * (folio) keeps them. Memory is backed by {@link MemorySegment}s allocated lazily, 2 MiB at a time, on first use:
 * a machine of 64 GiB costs only what it touches. The per-frame bookkeeping is sparse too, as the kernel's
 * {@code CONFIG_SPARSEMEM_EXTREME} keeps {@code mem_section}: a small directory of roots, each root an array of
 * {@link #SECTIONS_PER_ROOT} 2 MiB sections, and roots and sections are allocated on first use, so RAM that is never
 * touched costs no heap either, up to {@link #MAX_SIZE}. Closing the memory closes the arena, so every view handed
 * out before becomes unusable: a closed arena is a revoked mapping.
 * <p>
 * RAM starts at 0 and stops at the PCI hole below 4 GiB ({@link #PCI_HOLE_START}, where the host bridges' 32-bit
 * MMIO window lies); what is left continues at 4 GiB, as a PC's firmware remaps it ({@code e820}: usable RAM, then
 * a reserved gap, then RAM above 4 GiB). Frames in the hole do not exist: no allocation returns them and every
 * access to them is {@code EFAULT}.
 * <p>Size: about 530 lines, just over the project's 500: the buddy allocator, the sparse section directory and the
 * per-frame counts are one state under one monitor, as {@code struct page} and the free lists are in
 * {@code mm/page_alloc.c}.
 */
public final class HostMemory implements AutoCloseable {
    public static final int PAGE_SHIFT = 12;
    public static final long PAGE_SIZE = 1L << PAGE_SHIFT;
    /** The largest allocation order: 2^9 pages, one 2 MiB huge page. */
    public static final int MAX_ORDER = 9;
    public static final long HUGE_PAGE_SIZE = PAGE_SIZE << MAX_ORDER;
    private static final int FRAMES_PER_SECTION = 1 << MAX_ORDER;
    /** Sections under one root of the section directory ({@code SECTIONS_PER_ROOT}): 512, one GiB. */
    public static final int SECTIONS_PER_ROOT = 512;
    private static final int ROOT_SHIFT = MAX_ORDER + Integer.numberOfTrailingZeros(SECTIONS_PER_ROOT);
    /**
     * The largest RAM: the physical address map gives RAM {@code [0, MAX_SIZE)} and decodes device memory above it
     * (the 64-bit MMIO window of the PCI host bridges starts here).
     */
    public static final long MAX_SIZE = 1L << 40;
    /** Where RAM below 4 GiB ends and the PCI hole (32-bit MMIO, the IOAPIC, MSI, firmware) begins: 3 GiB. */
    public static final long PCI_HOLE_START = 0xC000_0000L;
    /** Where RAM continues above the PCI hole: 4 GiB. */
    public static final long PCI_HOLE_END = 1L << 32;
    private static final long HOLE = PCI_HOLE_END - PCI_HOLE_START;
    /** The most RAM there can be: what fits below {@link #MAX_SIZE} beside the PCI hole (1 TiB less 1 GiB). */
    public static final long MAX_RAM = MAX_SIZE - HOLE;

    /** Per 2 MiB section: its backing and the per-frame state of its 512 frames. */
    private static final class Section {
        volatile MemorySegment backing;
        final AtomicIntegerArray refs = new AtomicIntegerArray(FRAMES_PER_SECTION);
        final AtomicIntegerArray pins = new AtomicIntegerArray(FRAMES_PER_SECTION);
        /** For allocated frames: local index of the head of their block; -1 when free. */
        final short[] head = new short[FRAMES_PER_SECTION];
        /** For heads: the block's order; for free heads: order in the free lists, else -1. */
        final byte[] order = new byte[FRAMES_PER_SECTION];
        final byte[] freeOrder = new byte[FRAMES_PER_SECTION];

        Section() {
            Arrays.fill(head, (short) -1);
            Arrays.fill(freeOrder, (byte) -1);
        }
    }

    private final long size;
    /** First physical address above RAM. */
    private final long end;
    private final Arena arena = Arena.ofShared();
    private final long sectionCount;
    /** The section directory: root {@code i} holds sections {@code i * SECTIONS_PER_ROOT} on; null until used. */
    private final AtomicReferenceArray<AtomicReferenceArray<Section>> roots;
    @SuppressWarnings("unchecked")
    private final TreeSet<Long>[] freeLists = new TreeSet[MAX_ORDER + 1];
    private int freshSections;
    private final AtomicLong allocatedFrames = new AtomicLong();
    private final AtomicLong backedSections = new AtomicLong();
    private final AtomicLong pinsAcquired = new AtomicLong();
    private final AtomicLong pinsReleased = new AtomicLong();
    private volatile boolean closed;

    /**
     * @param bytes RAM size, a positive multiple of 2 MiB of at most {@link #MAX_RAM}
     * @throws ErrnoException {@code EINVAL} naming the size and the rule it breaks
     */
    public HostMemory(long bytes) {
        if (bytes <= 0 || bytes % HUGE_PAGE_SIZE != 0) {
            throw new ErrnoException(Errno.EINVAL, "host memory size must be a positive multiple of 2 MiB, not " + bytes);
        }
        if (bytes > MAX_RAM) {
            throw new ErrnoException(Errno.EINVAL, "host memory size " + bytes + " bytes exceeds the limit of "
                    + MAX_RAM + " bytes (1 TiB less the 1 GiB PCI hole): the physical address map decodes"
                    + " device memory from 0x" + Long.toHexString(MAX_SIZE));
        }
        this.size = bytes;
        this.end = bytes <= PCI_HOLE_START ? bytes : bytes + HOLE;
        this.sectionCount = end / HUGE_PAGE_SIZE;
        this.roots = new AtomicReferenceArray<>((int) ((sectionCount + SECTIONS_PER_ROOT - 1) / SECTIONS_PER_ROOT));
        for (int i = 0; i <= MAX_ORDER; i++) {
            freeLists[i] = new TreeSet<>();
        }
    }

    /** RAM size in bytes. */
    public long size() {
        return size;
    }

    /** First physical address above RAM: the size, plus the PCI hole when RAM reaches past {@link #PCI_HOLE_START}. */
    public long end() {
        return end;
    }

    /** Number of 4 KiB frames of RAM (the hole has none). */
    public long totalFrames() {
        return size >>> PAGE_SHIFT;
    }

    /** Frames currently allocated. */
    public long allocatedFrames() {
        return allocatedFrames.get();
    }

    /**
     * Frames of blocks with a pin count above zero ({@code folio_maybe_dma_pinned}, a whole block counted when its
     * head is pinned). Walks only the sections ever used, so its cost follows the memory touched, not the RAM size;
     * a snapshot, for reports and end-of-test checks.
     */
    public long pinnedFrames() {
        long pinned = 0;
        for (int r = 0; r < roots.length(); r++) {
            AtomicReferenceArray<Section> root = roots.get(r);
            for (int i = 0; root != null && i < SECTIONS_PER_ROOT; i++) {
                Section s = root.get(i);
                for (int f = 0; s != null && f < FRAMES_PER_SECTION; f++) {
                    int h = s.head[f];
                    if (h >= 0 && s.pins.get(h) > 0) {
                        pinned++;
                    }
                }
            }
        }
        return pinned;
    }

    /** Bytes of host (JVM off-heap) memory actually backing the simulated RAM. */
    public long residentBytes() {
        return backedSections.get() * HUGE_PAGE_SIZE;
    }

    /**
     * Allocates 2^order contiguous, naturally aligned, zeroed frames ({@code alloc_pages} with {@code __GFP_ZERO});
     * the block's reference count is 1.
     *
     * @return the first frame number
     * @throws ErrnoException {@code EINVAL} for an order outside 0..9, {@code ENOMEM} when no block is free
     */
    public long allocPages(int order) {
        return allocPages(order, true);
    }

    /**
     * As {@link #allocPages(int)}; without {@code zero} ({@code alloc_pages} without {@code __GFP_ZERO}) the frames
     * keep whatever they held when last freed, for a caller that overwrites every byte before anyone reads one
     * (a TTM move's destination, {@code ttm_tt_create(bo, false)}).
     *
     * @return the first frame number
     * @throws ErrnoException {@code EINVAL} for an order outside 0..9, {@code ENOMEM} when no block is free
     */
    public long allocPages(int order, boolean zero) {
        if (order < 0 || order > MAX_ORDER) {
            throw new ErrnoException(Errno.EINVAL, "allocation order must be 0.." + MAX_ORDER + ", not " + order);
        }
        long pfn;
        synchronized (this) {
            ensureOpen();
            pfn = takeBlock(order);
            Section s = section(pfn);
            int local = local(pfn);
            int n = 1 << order;
            for (int i = 0; i < n; i++) {
                s.head[local + i] = (short) local;
            }
            s.order[local] = (byte) order;
            s.refs.set(local, 1);
            allocatedFrames.addAndGet(n);
        }
        if (zero) {
            backing(pfn).asSlice(offsetInSection(pfn), PAGE_SIZE << order).fill((byte) 0);
        }
        return pfn;
    }

    /** Takes one more reference on the block holding {@code pfn} ({@code get_page}/{@code folio_get}). */
    public void getPage(long pfn) {
        Section s = allocatedSection(pfn);
        int h = s.head[local(pfn)];
        s.refs.incrementAndGet(h);
    }

    /**
     * Drops a reference on the block holding {@code pfn} ({@code put_page}); the block is freed when the last
     * reference goes.
     *
     * @return whether the block was freed
     */
    public boolean putPage(long pfn) {
        Section s = allocatedSection(pfn);
        int h = s.head[local(pfn)];
        int left = s.refs.decrementAndGet(h);
        if (left < 0) {
            s.refs.incrementAndGet(h);
            throw new ErrnoException(Errno.EINVAL, "put_page on frame 0x" + Long.toHexString(pfn) + " with no reference");
        }
        if (left > 0) {
            return false;
        }
        if (s.pins.get(h) != 0) {
            throw new IllegalStateException("frame 0x" + Long.toHexString(pfn) + " freed while pinned");
        }
        synchronized (this) {
            long headPfn = (pfn & ~(FRAMES_PER_SECTION - 1L)) + h;
            int order = s.order[h];
            int n = 1 << order;
            for (int i = 0; i < n; i++) {
                s.head[h + i] = -1;
            }
            allocatedFrames.addAndGet(-n);
            releaseBlock(headPfn, order);
        }
        return true;
    }

    /**
     * Pins the block holding {@code pfn} ({@code try_grab_folio(FOLL_PIN)}): one pin count and one reference,
     * so the frame stays allocated until {@link #unpinPage}.
     */
    public void pinPage(long pfn) {
        Section s = allocatedSection(pfn);
        int h = s.head[local(pfn)];
        s.refs.incrementAndGet(h);
        s.pins.incrementAndGet(h);
        pinsAcquired.incrementAndGet();
    }

    /** Drops a pin taken by {@link #pinPage} ({@code unpin_user_page}); may free the block. */
    public boolean unpinPage(long pfn) {
        Section s = allocatedSection(pfn);
        int h = s.head[local(pfn)];
        int left = s.pins.decrementAndGet(h);
        if (left < 0) {
            s.pins.incrementAndGet(h);
            throw new ErrnoException(Errno.EINVAL, "unpin of frame 0x" + Long.toHexString(pfn) + " that is not pinned");
        }
        pinsReleased.incrementAndGet();
        return putPage(pfn);
    }

    /** Pins taken since boot ({@code /proc/vmstat nr_foll_pin_acquired}). */
    public long pinsAcquired() {
        return pinsAcquired.get();
    }

    /** Pins dropped since boot ({@code nr_foll_pin_released}). */
    public long pinsReleased() {
        return pinsReleased.get();
    }

    /** Pins held now: acquired minus released. */
    public long pinsOutstanding() {
        return pinsAcquired.get() - pinsReleased.get();
    }

    /** References held on the block containing {@code pfn} (0 when free). */
    public int refCount(long pfn) {
        return headCounter(pfn, false);
    }

    /** Pins held on the block containing {@code pfn} ({@code folio_maybe_dma_pinned} when > 0). */
    public int pinCount(long pfn) {
        return headCounter(pfn, true);
    }

    private int headCounter(long pfn, boolean pins) {
        Section s = section(checkPfn(pfn));
        int h = s == null ? -1 : s.head[local(pfn)];
        if (h < 0) {
            return 0;
        }
        return pins ? s.pins.get(h) : s.refs.get(h);
    }

    /** Whether {@code pfn} belongs to an allocated block. */
    public boolean isAllocated(long pfn) {
        Section s = section(checkPfn(pfn));
        return s != null && s.head[local(pfn)] >= 0;
    }

    /** The order of the allocated block containing {@code pfn}. */
    public int orderOf(long pfn) {
        Section s = allocatedSection(pfn);
        return s.order[s.head[local(pfn)]];
    }

    /** First frame of the allocated block containing {@code pfn} ({@code compound_head}). */
    public long headOf(long pfn) {
        Section s = allocatedSection(pfn);
        return (pfn & ~(FRAMES_PER_SECTION - 1L)) + s.head[local(pfn)];
    }

    /** The 4 KiB CPU view of frame {@code pfn} ({@code page_address}/{@code kmap}). */
    public MemorySegment frame(long pfn) {
        checkPfn(pfn);
        return backing(pfn).asSlice(offsetInSection(pfn), PAGE_SIZE);
    }

    /**
     * The CPU view of {@code length} bytes at physical address {@code physAddr}; the range may not cross a 2 MiB
     * boundary (contiguous blocks never do).
     */
    public MemorySegment slice(long physAddr, long length) {
        checkRange(physAddr, length);
        long off = physAddr & (HUGE_PAGE_SIZE - 1);
        if (off + length > HUGE_PAGE_SIZE) {
            throw new ErrnoException(Errno.EINVAL, "range 0x" + Long.toHexString(physAddr) + "+" + length
                    + " crosses a 2 MiB section");
        }
        return backing(physAddr >>> PAGE_SHIFT).asSlice(off, length);
    }

    /** Copies RAM at {@code physAddr} into {@code dst} (any length, across sections). */
    public void read(long physAddr, MemorySegment dst) {
        long len = dst.byteSize();
        checkRange(physAddr, len);
        long done = 0;
        while (done < len) {
            long pa = physAddr + done;
            long off = pa & (HUGE_PAGE_SIZE - 1);
            long n = Math.min(len - done, HUGE_PAGE_SIZE - off);
            MemorySegment.copy(backing(pa >>> PAGE_SHIFT), off, dst, done, n);
            done += n;
        }
    }

    /** Copies {@code src} into RAM at {@code physAddr} (any length, across sections). */
    public void write(long physAddr, MemorySegment src) {
        long len = src.byteSize();
        checkRange(physAddr, len);
        long done = 0;
        while (done < len) {
            long pa = physAddr + done;
            long off = pa & (HUGE_PAGE_SIZE - 1);
            long n = Math.min(len - done, HUGE_PAGE_SIZE - off);
            MemorySegment.copy(src, done, backing(pa >>> PAGE_SHIFT), off, n);
            done += n;
        }
    }

    /** Whether the physical range lies inside RAM: below the PCI hole, or above it (a range across it does not). */
    public boolean contains(long physAddr, long length) {
        if (physAddr < 0 || length < 0) {
            return false;
        }
        long low = Math.min(size, PCI_HOLE_START);
        return physAddr <= low - length || (end > PCI_HOLE_END && physAddr >= PCI_HOLE_END && physAddr <= end - length);
    }

    /** Whether any byte of {@code [physAddr, physAddr + length)} is RAM; {@code length} is positive. */
    public boolean overlaps(long physAddr, long length) {
        long last = physAddr + length - 1;
        long low = Math.min(size, PCI_HOLE_START);
        return (physAddr < low && last >= 0) || (end > PCI_HOLE_END && physAddr < end && last >= PCI_HOLE_END);
    }

    /** Releases all backing memory; every view handed out becomes unusable. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        arena.close();
    }

    public boolean isClosed() {
        return closed;
    }

    // buddy allocator; callers hold the monitor

    private long takeBlock(int order) {
        for (int o = order; o <= MAX_ORDER; o++) {
            Long found = freeLists[o].pollFirst();
            if (found == null && o == MAX_ORDER && (long) freshSections * HUGE_PAGE_SIZE == PCI_HOLE_START) {
                freshSections = (int) (PCI_HOLE_END / HUGE_PAGE_SIZE); // no frames in the PCI hole
            }
            if (found == null && o == MAX_ORDER && freshSections < sectionCount) {
                found = (long) freshSections++ * FRAMES_PER_SECTION;
                sectionFor(found);
            } else if (found != null) {
                section(found).freeOrder[local(found)] = -1;
            }
            if (found != null) {
                long pfn = found;
                // split down to the wanted order, returning the upper halves
                for (int k = o; k > order; k--) {
                    long buddy = pfn + (1L << (k - 1));
                    addFree(buddy, k - 1);
                }
                return pfn;
            }
        }
        throw new ErrnoException(Errno.ENOMEM, "no free block of order " + order + " in " + size + " bytes of RAM");
    }

    private void releaseBlock(long pfn, int order) {
        while (order < MAX_ORDER) {
            long buddy = pfn ^ (1L << order);
            Section bs = section(buddy);
            if (bs == null || bs.freeOrder[local(buddy)] != order) {
                break;
            }
            freeLists[order].remove(buddy);
            bs.freeOrder[local(buddy)] = -1;
            pfn = Math.min(pfn, buddy);
            order++;
        }
        addFree(pfn, order);
    }

    private void addFree(long pfn, int order) {
        freeLists[order].add(pfn);
        section(pfn).freeOrder[local(pfn)] = (byte) order;
    }

    private void ensureOpen() {
        if (closed) {
            throw new ErrnoException(Errno.ENODEV, "host memory is closed");
        }
    }

    private long checkPfn(long pfn) {
        if (!contains(pfn << PAGE_SHIFT, PAGE_SIZE)) {
            throw new ErrnoException(Errno.EFAULT, "frame number 0x" + Long.toHexString(pfn) + " is outside RAM");
        }
        return pfn;
    }

    private void checkRange(long physAddr, long length) {
        if (!contains(physAddr, length)) {
            throw new ErrnoException(Errno.EFAULT, "physical range 0x" + Long.toHexString(physAddr) + "+" + length
                    + " is outside RAM of " + size + " bytes" + (end > size ? " (below 0x" + Long.toHexString(PCI_HOLE_START)
                    + " and from 0x" + Long.toHexString(PCI_HOLE_END) + " to 0x" + Long.toHexString(end) + ")" : ""));
        }
    }

    /** The section of {@code pfn} ({@code __pfn_to_section}), or null if it was never used. */
    private Section section(long pfn) {
        AtomicReferenceArray<Section> root = roots.get((int) (pfn >>> ROOT_SHIFT));
        return root == null ? null : root.get(sectionInRoot(pfn));
    }

    /** The section of {@code pfn}, allocated with its root on first use ({@code sparse_index_alloc}). */
    private Section sectionFor(long pfn) {
        int r = (int) (pfn >>> ROOT_SHIFT);
        AtomicReferenceArray<Section> root = roots.get(r);
        if (root == null) {
            AtomicReferenceArray<Section> freshRoot = new AtomicReferenceArray<>(SECTIONS_PER_ROOT);
            root = roots.compareAndExchange(r, null, freshRoot);
            if (root == null) {
                root = freshRoot;
            }
        }
        int i = sectionInRoot(pfn);
        Section s = root.get(i);
        if (s == null) {
            Section fresh = new Section();
            s = root.compareAndExchange(i, null, fresh);
            if (s == null) {
                s = fresh;
            }
        }
        return s;
    }

    private static int sectionInRoot(long pfn) {
        return (int) (pfn >>> MAX_ORDER) & (SECTIONS_PER_ROOT - 1);
    }

    private Section allocatedSection(long pfn) {
        Section s = section(checkPfn(pfn));
        if (s == null || s.head[local(pfn)] < 0) {
            throw new ErrnoException(Errno.EFAULT, "frame 0x" + Long.toHexString(pfn) + " is not allocated");
        }
        return s;
    }

    private MemorySegment backing(long pfn) {
        Section s = sectionFor(pfn);
        MemorySegment b = s.backing;
        if (b == null) {
            synchronized (s) {
                b = s.backing;
                if (b == null) {
                    ensureOpen();
                    b = arena.allocate(HUGE_PAGE_SIZE, PAGE_SIZE);
                    s.backing = b;
                    backedSections.incrementAndGet();
                }
            }
        }
        return b;
    }

    private static int local(long pfn) {
        return (int) (pfn & (FRAMES_PER_SECTION - 1));
    }

    private static long offsetInSection(long pfn) {
        return (pfn & (FRAMES_PER_SECTION - 1)) << PAGE_SHIFT;
    }
}
