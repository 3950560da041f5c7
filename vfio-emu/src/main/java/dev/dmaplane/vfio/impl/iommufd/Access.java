package dev.dmaplane.vfio.impl.iommufd;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IoPageTable;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.vfio.impl.IoPageStore;
import dev.dmaplane.vfio.iommufd.IommufdAccess;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * An in-kernel user of an IOAS ({@code struct iommufd_access} with {@code iommufd_access_create},
 * {@code _attach}, {@code _detach}, {@code _pin_pages}, {@code _unpin_pages}, {@code _rw} and
 * {@code iommufd_access_notify_unmap} of {@code drivers/iommu/iommufd/device.c}). Its pins hold a reference to the
 * pages they cover ({@code iopt_area_add_access}) and keep {@link Ioas#unmap} from taking the area until the driver
 * unpins. Guarded by the context's lock, which every operation takes; {@link #notifyUnmap} is called without it,
 * from an {@code IOMMU_IOAS_UNMAP} ({@link Ioas#unmapStep}) and from {@link #detach} and {@link #destroy}, which drop
 * the lock around it as {@code iommufd_access_change_ioas} drops {@code ioas_lock}: from the start of a detach
 * {@code ioas} is null, so pins and copies are refused, while {@code ioasUnpin} lets the driver still unpin.
 */
final class Access extends IommufdObject implements IommufdAccess {
    private static final Logger LOG = LoggerFactory.getLogger(Access.class);
    private static final long PAGE = IoPageTable.PAGE_SIZE;

    /** One {@link #pinPages}: the range as asked, its page-aligned span, and the pages it holds a reference to. */
    private record Pin(long iova, long length, long first, long last, List<Ioas.PagesSlice> slices, boolean write) {
    }

    private final IommufdCtx ctx;
    private final Ops ops;
    private final HostMemory memory;
    private final List<Pin> pins = new ArrayList<>();
    /** Where pins and copies go ({@code access->ioas}); null from the start of a detach. */
    private Ioas ioas;
    /** Where unpins go ({@code access->ioas_unpin}): the IOAS until a detach has finished. */
    private Ioas ioasUnpin;
    private boolean destroyed;

    Access(int id, IommufdCtx ctx, Ops ops, HostMemory memory) {
        super(id, Type.ACCESS);
        this.ctx = ctx;
        this.ops = ops;
        this.memory = memory;
    }

    @Override
    public int id() {
        return id;
    }

    @Override
    public int ioas() {
        synchronized (ctx) {
            return ioas == null ? 0 : ioas.id;
        }
    }

    @Override
    public void attach(int ioasId) {
        synchronized (ctx) {
            alive("iommufd_access_attach");
            if (ioas != null) {
                throw new ErrnoException(Errno.EINVAL, "iommufd_access_attach: " + this + " is attached to " + ioas
                        + " already");
            }
            if (ioasUnpin != null) { // iommufd_access_change_ioas: "racing with a concurrent detach, bail"
                throw new ErrnoException(Errno.EBUSY, "iommufd_access_attach: " + this + " is being detached from "
                        + ioasUnpin);
            }
            Ioas target = ctx.ioasFor(ioasId, "iommufd_access_attach");
            target.accesses.add(this);
            target.users++;
            ioas = target;
            ioasUnpin = target;
        }
    }

    @Override
    public void detach() {
        Ioas cur;
        synchronized (ctx) {
            alive("iommufd_access_detach");
            attached("iommufd_access_detach");
            cur = ioas;
            ioas = null;
        }
        changeToNone(cur);
    }

    /**
     * {@code iommufd_access_change_ioas(access, NULL)} once {@code ioas} was set to null under the lock: the driver
     * unmaps everything with no lock held, then, locked again, the IOAS lets go of the access.
     */
    private void changeToNone(Ioas cur) {
        notifyUnmap(0, Ioas.ULONG_MAX);
        synchronized (ctx) {
            if (!pins.isEmpty()) {
                LOG.error("{}: the driver left {} pin(s) after its unmap callback for the whole space; dropped", this,
                        pins.size());
                for (Pin p : List.copyOf(pins)) {
                    release(p);
                }
            }
            cur.accesses.remove(this);
            cur.users--;
            ioasUnpin = null;
        }
    }

    @Override
    public long[] pinPages(long iova, long length, int flags) {
        synchronized (ctx) {
            String what = "iommufd_access_pin_pages";
            alive(what);
            long last = checkRange(iova, length, flags, what);
            attached(what);
            if ((iova & (PAGE - 1)) != 0) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: IOVA %#x is not page-aligned", what, iova));
            }
            long spanLast = last | (PAGE - 1);
            checkAreas(iova, spanLast, flags, what);
            List<Ioas.PagesSlice> slices = ioas.pages(iova, spanLast - iova + 1);
            pins.add(new Pin(iova, length, iova, spanLast, slices, (flags & RW_WRITE) != 0));
            long[] phys = new long[(int) ((spanLast - iova + 1) / PAGE)];
            int n = 0;
            for (Ioas.PagesSlice s : slices) {
                for (int i = 0; i < s.length() / PAGE; i++) {
                    phys[n++] = s.pages().phys(s.firstPage() + i);
                }
            }
            return phys;
        }
    }

    @Override
    public void unpinPages(long iova, long length) {
        synchronized (ctx) {
            String what = "iommufd_access_unpin_pages";
            if (ioasUnpin == null) {
                throw new ErrnoException(Errno.ENOENT, what + ": " + this + " is attached to no IOAS");
            }
            Pin pin = null;
            for (Pin p : pins) {
                if (p.iova() == iova && p.length() == length) {
                    pin = p;
                    break;
                }
            }
            if (pin == null) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: %s has no pin of %#x+%#x", what, this, iova,
                        length));
            }
            release(pin);
        }
    }

    private void release(Pin p) {
        pins.remove(p);
        for (Ioas.PagesSlice s : p.slices()) {
            s.pages().put(p.write());
        }
    }

    @Override
    public void rw(long iova, MemorySegment data, int flags) {
        synchronized (ctx) {
            String what = "iommufd_access_rw";
            alive(what);
            ErrnoException.requireNonNull(data, what + ": data");
            long last = checkRange(iova, data.byteSize(), flags, what);
            attached(what);
            checkAreas(iova, last, flags, what);
            long cur = iova;
            for (IoPageStore.Area a : ioas.store.overlapping(iova, last)) {
                long end = Ioas.le(a.last(), last) ? a.last() : last;
                copy(a, cur, data.asSlice(cur - iova, end - cur + 1), (flags & RW_WRITE) != 0);
                if (end == last) {
                    break;
                }
                cur = end + 1;
            }
        }
    }

    /** Copies between {@code data} and area {@code a} from IOVA {@code at}, page by page through the physical pages. */
    private void copy(IoPageStore.Area a, long at, MemorySegment data, boolean write) {
        long done = 0;
        while (done < data.byteSize()) {
            long iova = at + done;
            long inPage = iova & (PAGE - 1);
            int page = a.firstPage() + (int) ((iova - a.iova()) / PAGE);
            long n = Math.min(PAGE - inPage, data.byteSize() - done);
            long phys = a.pages().phys(page) + inPage;
            if (write) {
                memory.write(phys, data.asSlice(done, n));
            } else {
                memory.read(phys, data.asSlice(done, n));
            }
            done += n;
        }
    }

    /** Length 0 {@code EINVAL}, a range that wraps {@code EOVERFLOW}, an unknown flag {@code EINVAL}; the last IOVA. */
    private static long checkRange(long iova, long length, int flags, String what) {
        if (length == 0) {
            throw new ErrnoException(Errno.EINVAL, what + ": length 0");
        }
        long last = iova + length - 1;
        if (!Ioas.le(iova, last)) {
            throw new ErrnoException(Errno.EOVERFLOW, String.format("%s: %#x + %#x wraps", what, iova, length));
        }
        if ((flags & ~RW_WRITE) != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: flags %#x", what, flags));
        }
        return last;
    }

    /**
     * {@code iopt_for_each_contig_area} with the checks of pin and rw, all before anything is pinned or copied:
     * an area being unmapped or backed by a dma-buf {@code EINVAL}, one without the access's protection
     * {@code EPERM}, a hole {@code ENOENT}.
     */
    private void checkAreas(long first, long last, int flags, String what) {
        boolean write = (flags & RW_WRITE) != 0;
        for (IoPageStore.Area a : ioas.store.overlapping(first, last)) {
            if (ioas.preventsAccess(a)) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: %s of %s is being unmapped", what, a, ioas));
            }
            if (!a.pages().cpuReachable()) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: %s of %s is a dma-buf's", what, a, ioas));
            }
            int need = write ? IoPageTable.PROT_WRITE : IoPageTable.PROT_READ;
            if ((a.prot() & need) == 0) {
                throw new ErrnoException(Errno.EPERM, String.format("%s: %s of %s is not mapped for %s", what, a, ioas,
                        write ? "writes" : "reads"));
            }
        }
        if (!ioas.covered(first, last)) {
            throw new ErrnoException(Errno.ENOENT, String.format("%s: %#x-%#x of %s is not mapped contiguously", what,
                    first, last, ioas));
        }
    }

    /** Whether a pin of this access covers part of {@code [first, last]}. */
    boolean pins(long first, long last) {
        for (Pin p : pins) {
            if (Ioas.intersects(first, last, p.first(), p.last())) {
                return true;
            }
        }
        return false;
    }

    /**
     * {@code access->ops->unmap} for {@code [iova, iova + length)}. A driver callback that throws is a driver bug:
     * logged with its stack; the pins it left make the unmap try again, then fail.
     */
    void notifyUnmap(long iova, long length) {
        try {
            ops.unmap(iova, length);
        } catch (RuntimeException e) {
            LOG.error("{}: the driver's unmap callback for {}+{} failed", this, Long.toHexString(iova),
                    Long.toHexString(length), e);
        }
    }

    @Override
    public void destroy() {
        Ioas cur;
        synchronized (ctx) {
            if (destroyed) {
                return;
            }
            destroyed = true;
            cur = ioas;
            ioas = null;
        }
        if (cur != null) {
            changeToNone(cur);
        }
        synchronized (ctx) {
            ctx.accessDestroyed(this);
        }
    }

    private void alive(String what) {
        if (destroyed) {
            throw new ErrnoException(Errno.ENODEV, what + ": " + this + " was destroyed");
        }
    }

    private void attached(String what) {
        if (ioas == null) {
            throw new ErrnoException(Errno.ENOENT, what + ": " + this + " is attached to no IOAS");
        }
    }
}
