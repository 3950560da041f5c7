package dev.dmaplane.mm;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.impl.Gup;
import dev.dmaplane.mm.impl.MappingOps;
import dev.dmaplane.mm.impl.Migration;
import dev.dmaplane.mm.impl.Mm;
import dev.dmaplane.mm.impl.UserAccess;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.resource.DeviceResources;
import dev.dmaplane.resource.ResourceLimits;
import dev.dmaplane.resource.UContext;
import dev.dmaplane.trace.Tracer;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.Set;

/**
 * A process address space ({@code struct mm_struct}): VMAs of anonymous memory, files through their page cache,
 * or DAX files, populated on demand by page faults, each present page holding a reference on its frame. Device
 * drivers pin pages for DMA ({@link #pin}) and mirror ranges with interval notifiers
 * ({@link #registerNotifier}). Closing it is {@code exit_mmap}: every frame goes back to host memory except those
 * still pinned, which live until their last unpin. Thread-safe, with the kernel's locking: layout changes
 * exclude each other and faults, faults and pins run concurrently.
 * <p>
 * Errors follow the system calls: a CPU access or a pin of an unmapped address, past the end of a mapped file,
 * against the VMA's protection, or of a BAR mapping that cannot be faulted in fails with {@code EFAULT} (what {@code copy_to_user} and GUP return where a
 * user-space instruction would take {@code SIGSEGV} or {@code SIGBUS}). After {@link #close()} every call fails
 * with {@code EFAULT}.
 */
public final class AddressSpace implements AutoCloseable {
    /** The end of user space. */
    public static final long TASK_SIZE = Mm.TASK_SIZE;
    /** The lowest address a mapping may start at ({@code vm.mmap_min_addr}). */
    public static final long MMAP_MIN_ADDR = Mm.MMAP_MIN_ADDR;

    private final Mm mm;
    private final UContext files;

    /**
     * @param name the name events are traced under (a process name or pid)
     */
    public AddressSpace(HostMemory mem, Tracer tracer, String name) {
        ErrnoException.requireNonNull(mem, "host memory");
        ErrnoException.requireNonNull(tracer, "tracer");
        this.mm = new Mm(mem, tracer, name);
        this.files = new DeviceResources("files of " + name, tracer, ResourceLimits.UNLIMITED).open();
    }

    /**
     * The process's open files ({@code files_struct}): the handles drivers hand this process by number, such as a
     * dma-buf's fd ({@code DmaBuf.fd(space.files())}) that a verbs user then passes to {@code ibv_reg_dmabuf_mr}.
     * Closed with the address space ({@code exit_files} after {@code exit_mm}), every handle dropped.
     */
    public UContext files() {
        return files;
    }

    public String name() {
        return mm.name();
    }

    public HostMemory memory() {
        return mm.memory();
    }

    /**
     * {@code mmap(NULL, length, prot, MAP_PRIVATE|MAP_ANONYMOUS)}: zero-filled memory, one frame per page on first
     * touch.
     *
     * @return the start address, chosen top-down
     * @throws ErrnoException {@code EINVAL} for a length below 1 or unknown prot bits, {@code ENOMEM} if no range
     *                        fits
     */
    public long mmapAnonymous(long length, int prot) {
        return MappingOps.mmap(mm, -1, length, prot, new VmaBacking.Anonymous());
    }

    /**
     * {@code mmap(addr, length, prot, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED)}: whatever is mapped in the range is
     * unmapped first (notifiers see UNMAP).
     *
     * @throws ErrnoException {@code EINVAL} for an unaligned address, {@code EPERM} below
     *                        {@link #MMAP_MIN_ADDR}, {@code ENOMEM} past {@link #TASK_SIZE}
     */
    public long mmapAnonymousFixed(long addr, long length, int prot) {
        return MappingOps.mmap(mm, addr, length, prot, new VmaBacking.Anonymous());
    }

    /**
     * {@code mmap(NULL, length, prot, shared ? MAP_SHARED : MAP_PRIVATE, fd, fileOffset)}. On a DAX file system
     * the VMA maps the file's blocks directly ({@link VmaBacking.Dax}), else its page cache. A private mapping
     * reads the file until a store copies the page ({@code COW}). Pages past the end of the file cannot be
     * touched ({@code EFAULT}), but may become valid when the file grows.
     *
     * A shared mapping of a file sealed with {@code F_SEAL_WRITE} or {@code F_SEAL_FUTURE_WRITE} must be read-only
     * and stays so ({@code mprotect} then refuses {@code PROT_WRITE}).
     *
     * @throws ErrnoException {@code EINVAL} for a negative or unaligned offset, a length below 1 or unknown prot
     *                        bits, {@code ENOENT} for an evicted inode, {@code ENOMEM} if no range fits,
     *                        {@code EPERM} for a writable shared mapping of a file sealed against writes
     */
    public long mmapFile(Inode inode, long fileOffset, long length, int prot, boolean shared) {
        if (inode == null) {
            throw new ErrnoException(Errno.EBADF, "mmap of a null inode");
        }
        if (fileOffset < 0 || (fileOffset & (HostMemory.PAGE_SIZE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, "mmap file offset " + fileOffset
                    + " must be a non-negative multiple of the page size");
        }
        long pgoff = fileOffset >>> HostMemory.PAGE_SHIFT;
        VmaBacking backing = inode.isDax() ? new VmaBacking.Dax(inode, pgoff, shared)
                : new VmaBacking.File(inode, pgoff, shared);
        return MappingOps.mmap(mm, -1, length, prot, backing);
    }

    /**
     * {@code mmap(NULL, length, prot, MAP_SHARED, device_fd, offset)} of a PCI function's BAR, as
     * {@code vfio_pci_core_mmap} maps a BAR region (or sysfs a {@code resourceN} file): a {@code VM_IO | VM_PFNMAP}
     * VMA ({@link VmaBacking.PciBar}) whose loads and stores reach bytes {@code [offset, offset + length)} of the
     * BAR, its device model's registers for a register BAR (in naturally aligned accesses of up to 8 bytes, as
     * CPU instructions issue them) or its memory. A page is inserted on first touch while the function decodes
     * memory; a touch while it does not is {@code SIGBUS}, reported as {@code EFAULT}.
     * <p>
     * Such a VMA cannot be pinned ({@link #pin} and {@link #faultRange} answer {@code EFAULT}, as
     * {@code check_vma_flags} does), so neither can an RDMA memory region be registered on it. A reset of the
     * function (FLR, a secondary bus reset above it) zaps its pages and interval notifiers see CLEAR; the next
     * access faults them in again if the BAR still decodes ({@code vfio_pci_mmap_huge_fault}). When the function
     * leaves its bus (hot unplug, its device model unloaded) the pages are zapped for good: every later access
     * fails with {@code EFAULT} until the range is unmapped.
     *
     * @return the start address, chosen top-down
     * @throws ErrnoException {@code EINVAL} for a null function, a BAR it does not implement, a negative or
     *                        unaligned offset, a length below 1, a range past the BAR's end or unknown prot bits;
     *                        {@code ENODEV} when the function is not on its bus; {@code ENOMEM} if no range fits
     */
    public long mmapBar(PciFunction fn, int bar, long offset, long length, int prot) {
        return MappingOps.mmapBar(mm, fn, bar, offset, length, prot);
    }

    /**
     * {@code munmap(addr, length)}: may split VMAs. Notifiers see UNMAP first; pinned frames stay allocated until
     * unpinned. Unmapping nothing is not an error.
     *
     * @throws ErrnoException {@code EINVAL} for an unaligned address, a length below 1, or a range outside user
     *                        space
     */
    public void munmap(long addr, long length) {
        MappingOps.munmap(mm, addr, length);
    }

    /**
     * {@code mprotect(addr, length, prot)}: may split VMAs; notifiers see PROTECTION. Pins taken before stay.
     *
     * @throws ErrnoException {@code EINVAL} for an unaligned address or unknown bits, {@code ENOMEM} when part of
     *                        the range is not mapped, {@code EACCES} for {@code PROT_WRITE} on a shared mapping
     *                        made while its file was sealed against writes (nothing changes then)
     */
    public void mprotect(long addr, long length, int prot) {
        MappingOps.mprotect(mm, addr, length, prot);
    }

    /** The VMAs in address order ({@code /proc/pid/maps}; {@link Vma#toString()} prints a maps line). */
    public List<Vma> vmas() {
        return mm.vmas();
    }

    /** The VMA containing {@code addr}, if any ({@code vma_lookup}). */
    public Optional<Vma> findVma(long addr) {
        return vmas().stream().filter(v -> v.contains(addr)).findFirst();
    }

    /**
     * Loads {@code dst.byteSize()} bytes at {@code addr}, faulting pages in.
     *
     * @throws ErrnoException {@code EFAULT} for an unmapped or unreadable part, or a file page past the end of
     *                        the file; nothing is read then
     */
    public void read(long addr, MemorySegment dst) {
        UserAccess.read(mm, addr, dst);
    }

    /**
     * Stores {@code src} at {@code addr}, faulting pages in: anonymous pages are allocated zeroed, private file
     * pages copied, shared file pages marked dirty.
     *
     * @throws ErrnoException {@code EFAULT} for an unmapped part, a VMA without {@code PROT_WRITE}, or a file
     *                        page past the end of the file; nothing is written then
     */
    public void write(long addr, MemorySegment src) {
        UserAccess.write(mm, addr, src);
    }

    /**
     * {@code pin_user_pages(addr, length, FOLL_PIN | flags)}: faults every page of the range in and pins its
     * frame. All or nothing: when any part fails, nothing stays pinned.
     *
     * @throws ErrnoException {@code EINVAL} for a length below 1; {@code EFAULT} for an unmapped part, a file
     *                        page past the end of the file, {@link PinFlags#WRITE} on a VMA without
     *                        {@code PROT_WRITE}, a pin of a VMA without {@code PROT_READ}, or
     *                        {@code WRITE|LONGTERM} on a shared writable file mapping that needs dirty tracking
     *                        ({@code writable_file_mapping_allowed}); {@code EOPNOTSUPP} for
     *                        {@link PinFlags#LONGTERM} on fsdax; {@code ENOMEM}
     */
    public PinnedPages pin(long addr, long length, Set<PinFlags> flags) {
        return Gup.pin(mm, addr, length, flags);
    }

    /**
     * {@code hmm_range_fault(range)} with {@code HMM_PFN_REQ_FAULT} (plus {@code HMM_PFN_REQ_WRITE} for
     * {@code write}): faults every page of the range in as a CPU access would and returns the physical address of
     * each page, in order, without pinning or referencing anything. A device mirror (ODP) uses the addresses only
     * between {@link IntervalSubscription#readBegin()} and a {@link IntervalSubscription#readRetry} that answers
     * false, under the lock its notifier callback takes: an invalidation of the range ends their validity.
     *
     * @throws ErrnoException {@code EINVAL} for a length below 1; {@code EFAULT} for an unmapped or unreadable
     *                        part or a file page past the end of the file; {@code EPERM} for {@code write} on a
     *                        VMA without {@code PROT_WRITE}; these are checked before any page is faulted in
     */
    public long[] faultRange(long addr, long length, boolean write) {
        return Gup.fault(mm, addr, length, write);
    }

    /**
     * Moves the anonymous page at {@code addr} to a new frame, copying its bytes; notifiers see MIGRATE and the
     * trace records it.
     *
     * @return the new physical address of {@code addr}
     * @throws ErrnoException {@code EBUSY} for a pinned page (nothing changes), {@code EFAULT} unmapped,
     *                        {@code ENOENT} not yet faulted in, {@code EINVAL} a file page
     */
    public long migrate(long addr) {
        return Migration.migrate(mm, addr);
    }

    /**
     * {@code mmu_interval_notifier_insert}: watches {@code [start, start + length)}; the callback runs for every
     * invalidation that overlaps it, until the subscription is closed.
     *
     * @throws ErrnoException {@code EOVERFLOW} for an empty or wrapping range
     */
    public IntervalSubscription registerNotifier(long start, long length, IntervalNotifier callback) {
        return mm.registerNotifier(start, length, callback);
    }

    /** Present pages of host memory (the resident set; pages of BAR mappings are not counted). */
    public long residentPages() {
        return mm.residentPages();
    }

    /** Pages pinned through this address space and not yet unpinned (counted per pin). */
    public long pinnedPages() {
        return mm.pinnedPages();
    }

    /** The physical address {@code addr} maps to if its page is present ({@code /proc/pid/pagemap}). */
    public OptionalLong physAddr(long addr) {
        return mm.physAddr(addr);
    }

    /** Whether {@link #close()} ran. */
    public boolean isClosed() {
        return mm.exited();
    }

    /**
     * {@code exit_mmap}: notifiers see RELEASE, all pages and VMAs go; pinned frames stay until unpinned. Then
     * {@code exit_files}: every open file of {@link #files()} is closed.
     */
    @Override
    public void close() {
        try {
            MappingOps.exit(mm);
        } finally {
            files.close();
        }
    }

    @Override
    public String toString() {
        return "address space " + mm.name();
    }
}
