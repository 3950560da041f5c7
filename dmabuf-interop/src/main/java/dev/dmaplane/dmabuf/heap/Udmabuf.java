package dev.dmaplane.dmabuf.heap;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.ExportInfo;
import dev.dmaplane.dmabuf.Exporter;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;

/**
 * {@code /dev/udmabuf} ({@code drivers/dma-buf/udmabuf.c}): turns a range of a memfd-like file into a dma-buf.
 * The file's pages are pinned for as long as the buffer lives (they are the buffer; a device writing them is
 * seen by whoever reads the file), and unpinned, marked dirty, at release.
 * <p>
 * {@code UDMABUF_CREATE}'s rules, in the kernel's order: offset and size must be page aligned ({@code EINVAL}),
 * the page count must not pass the {@code size_limit_mb} parameter (64 MiB by default; {@code EINVAL}, as
 * udmabuf.c returns, not {@code E2BIG}) nor be 0 ({@code EINVAL}); the file must be shmem-like
 * ({@code EBADFD} for a DAX file), sealed with {@code F_SEAL_SHRINK} and not with {@code F_SEAL_WRITE} or
 * {@code F_SEAL_FUTURE_WRITE} ({@code EINVAL}); the range must lie inside the file ({@code EINVAL}, as reading a
 * shmem page past the end does). Nothing stays pinned after a failure.
 */
public final class Udmabuf {
    /** The exporter name in bufinfo. */
    public static final String NAME = "udmabuf";
    /** {@code size_limit_mb}'s default. */
    public static final long DEFAULT_SIZE_LIMIT = 64L << 20;

    private final DmaBufs registry;
    private final HostMemory mem;
    private final long sizeLimit;

    public Udmabuf(DmaBufs registry) {
        this(registry, DEFAULT_SIZE_LIMIT);
    }

    /** With {@code sizeLimit} bytes as the {@code size_limit_mb} module parameter. */
    public Udmabuf(DmaBufs registry, long sizeLimit) {
        this.registry = ErrnoException.requireNonNull(registry, "registry");
        this.mem = registry.memory();
        ErrnoException.check(sizeLimit > 0, Errno.EINVAL, "udmabuf size limit must be positive, not " + sizeLimit);
        this.sizeLimit = sizeLimit;
    }

    /** {@code UDMABUF_CREATE} for {@code [offset, offset + size)} of {@code memfd}. */
    public DmaBuf create(Inode memfd, long offset, long size) {
        ErrnoException.check((offset & (HostMemory.PAGE_SIZE - 1)) == 0 && offset >= 0, Errno.EINVAL,
                "udmabuf: offset " + offset + " is not page aligned");
        ErrnoException.check((size & (HostMemory.PAGE_SIZE - 1)) == 0 && size >= 0, Errno.EINVAL,
                "udmabuf: size " + size + " is not page aligned");
        long pages = size >>> HostMemory.PAGE_SHIFT;
        ErrnoException.check(pages <= sizeLimit >>> HostMemory.PAGE_SHIFT, Errno.EINVAL, "udmabuf: " + size
                + " bytes pass size_limit_mb (" + (sizeLimit >> 20) + " MiB)");
        ErrnoException.check(pages > 0, Errno.EINVAL, "udmabuf: size 0");
        ErrnoException.check(memfd != null, Errno.EBADF, "udmabuf: no memfd");
        ErrnoException.check(!memfd.isDax(), Errno.EBADFD, "udmabuf: " + memfd.path() + " is not a shmem file (DAX mount)");
        int seals = memfd.seals();
        ErrnoException.check((seals & Inode.F_SEAL_SHRINK) != 0, Errno.EINVAL, "udmabuf: " + memfd.path()
                + " lacks F_SEAL_SHRINK (seals 0x" + Integer.toHexString(seals) + ")");
        ErrnoException.check((seals & (Inode.F_SEAL_WRITE | Inode.F_SEAL_FUTURE_WRITE)) == 0, Errno.EINVAL, "udmabuf: "
                + memfd.path() + " is sealed against writes (seals 0x" + Integer.toHexString(seals) + ")");
        ErrnoException.check(offset <= memfd.size() - size, Errno.EINVAL, "udmabuf: range " + offset + "+" + size
                + " passes the end of " + memfd.path() + " (size " + memfd.size() + ")");
        long first = offset >>> HostMemory.PAGE_SHIFT;
        long[] pfns;
        try {
            pfns = memfd.pinPages(first, (int) pages);
        } catch (ErrnoException e) {
            throw e.errno() == Errno.EFAULT ? new ErrnoException(Errno.EINVAL, "udmabuf: " + e.getMessage(), e) : e;
        }
        Pinned p = new Pinned(memfd, first, pfns);
        try {
            return registry.export(ExportInfo.of(NAME, size, ops(p)).withPriv(p));
        } catch (RuntimeException e) {
            p.release();
            throw e;
        }
    }

    /** The pinned file pages of one buffer. */
    private final class Pinned {
        final Inode file;
        final long firstIndex;
        final long[] pfns;
        boolean released;

        Pinned(Inode file, long firstIndex, long[] pfns) {
            this.file = file;
            this.firstIndex = firstIndex;
            this.pfns = pfns;
        }

        synchronized void release() {
            if (released) {
                return;
            }
            released = true;
            file.unpinPagesDirty(firstIndex, pfns);
        }

        void copy(long offset, MemorySegment data, boolean write) {
            long done = 0;
            while (done < data.byteSize()) {
                long at = offset + done;
                int page = (int) (at >>> HostMemory.PAGE_SHIFT);
                long within = at & (HostMemory.PAGE_SIZE - 1);
                long n = Math.min(HostMemory.PAGE_SIZE - within, data.byteSize() - done);
                long pa = (pfns[page] << HostMemory.PAGE_SHIFT) + within;
                if (write) {
                    mem.write(pa, data.asSlice(done, n));
                } else {
                    mem.read(pa, data.asSlice(done, n));
                }
                done += n;
            }
        }
    }

    private Exporter ops(Pinned p) {
        long[] phys = new long[p.pfns.length];
        for (int i = 0; i < phys.length; i++) {
            phys[i] = p.pfns[i] << HostMemory.PAGE_SHIFT;
        }
        SgTable table = SgTable.fromPages(phys, HostMemory.PAGE_SIZE, 0, phys.length * HostMemory.PAGE_SIZE);
        return Exporter.builder()
                .map((a, dir) -> a.device().dma().mapSg(table, dir))
                .unmap((a, sg, dir) -> a.device().dma().unmapSg(sg, dir))
                .release(buf -> p.release())
                .cpuRead((buf, off, dst) -> p.copy(off, dst, false))
                .cpuWrite((buf, off, src) -> p.copy(off, src, true))
                .build();
    }
}
