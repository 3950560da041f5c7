package dev.dmaplane.vfio.impl.iommufd;

import dev.dmaplane.device.Device;
import dev.dmaplane.device.FauxDevice;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.Iommu;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.iommu.IoPageTable;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.vfio.impl.VfioFile;
import dev.dmaplane.vfio.iommufd.IommufdAccess;
import dev.dmaplane.vfio.uapi.IoctlTable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.IntFunction;

import static dev.dmaplane.vfio.VfioLayouts.U32;
import static dev.dmaplane.vfio.VfioLayouts.U64;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;

/**
 * An open {@code /dev/iommu} ({@code struct iommufd_ctx} with {@code iommufd_fops} of
 * {@code drivers/iommu/iommufd/main.c}): the table of objects (IOAS, HWPT, devices) by ID from 1, and the ioctls
 * on them. Every command is read as {@code iommufd_fops_ioctl} reads it: a {@code __u32 size} first, {@code EINVAL}
 * below the command's minimum, {@code copy_struct_from_user} into the kernel's structure ({@code E2BIG} for a
 * non-zero byte past it, zeroes for a shorter one), the handler, and {@code iommufd_ucmd_respond} copying the
 * structure back up to the user's size. Unknown commands are {@code ENOTTY}; unknown flags and non-zero
 * {@code __reserved} fields {@code EOPNOTSUPP}; an ID of no object, or of one of another type, {@code ENOENT}.
 * Pointers in the structures ({@code allowed_iovas}, {@code data}) are addresses in the user's address space.
 * Devices bound through VFIO hold the context, so it lives until the descriptor and every bound device are gone;
 * then every object is destroyed and nothing stays pinned. Thread-safe: every operation holds this object's lock.
 * <p>
 * The IOAS commands are {@link IoasCommands} ({@code ioas.c}); the HWPT and dirty-tracking commands
 * ({@code hw_pagetable.c}), the device binding and the access objects stay here, on the object table and the lock.
 */
public final class IommufdCtx implements VfioFile {
    private static final Logger LOG = LoggerFactory.getLogger(IommufdCtx.class);
    private static final long PAGE = IoPageTable.PAGE_SIZE;

    /** The process's accounting: {@code locked_vm} against {@code RLIMIT_MEMLOCK}, and the pinned-pages count. */
    public interface Account {
        /** Charges (positive) or returns (negative) locked bytes; {@code ENOMEM} over the limit, nothing charged. */
        void lockAcct(long bytes);

        /** Counts pages pinned (positive) or unpinned (negative). */
        void pinned(long pages);
    }

    /** An IOMMU group with devices bound here ({@code struct iommufd_group}): one page table for all of them. */
    private static final class Igroup {
        int bound;
        int attached;
        Hwpt hwpt;
    }

    @FunctionalInterface
    private interface UcmdHandler {
        long run(Ucmd u);
    }

    private final String who;
    /** The device iommufd attaches to dma-bufs with ({@code iommufd_global_device}; one per context here). */
    private final FauxDevice globalDevice = FauxDevice.create("iommufd");
    private final AddressSpace mm;
    private final Iommu iommu;
    private final Account account;
    private final IntFunction<VfioFile> files;
    private final IoctlTable table;
    private final TreeMap<Integer, IommufdObject> objects = new TreeMap<>();
    private final Map<IommuGroup, Igroup> groups = new HashMap<>();
    /** The descriptor and one per bound device ({@code iommufd_ctx_get}). */
    private int refs = 1;

    /** @param files the process's descriptors ({@code fget}): {@code EBADF} for one not open */
    public IommufdCtx(String who, AddressSpace mm, Iommu iommu, Account account, IntFunction<VfioFile> files) {
        this.who = who;
        this.mm = mm;
        this.iommu = iommu;
        this.account = account;
        this.files = files;
        this.table = IoctlTable.enotty("/dev/iommu");
        op(IOMMU_DESTROY, "IOMMU_DESTROY", DESTROY, DESTROY.byteSize(), this::destroy);
        IoasCommands ioasCmds = new IoasCommands(this, who, mm, account, files, globalDevice);
        op(IOMMU_IOAS_ALLOC, "IOMMU_IOAS_ALLOC", IOAS_ALLOC, IOAS_ALLOC.byteSize(), ioasCmds::alloc);
        op(IOMMU_IOAS_ALLOW_IOVAS, "IOMMU_IOAS_ALLOW_IOVAS", IOAS_ALLOW_IOVAS, IOAS_ALLOW_IOVAS.byteSize(),
                ioasCmds::allowIovas);
        op(IOMMU_IOAS_COPY, "IOMMU_IOAS_COPY", IOAS_COPY, IOAS_COPY.byteSize(), ioasCmds::copy);
        op(IOMMU_IOAS_IOVA_RANGES, "IOMMU_IOAS_IOVA_RANGES", IOAS_IOVA_RANGES, IOAS_IOVA_RANGES.byteSize(),
                ioasCmds::iovaRanges);
        op(IOMMU_IOAS_MAP, "IOMMU_IOAS_MAP", IOAS_MAP, IOAS_MAP.byteSize(), ioasCmds::map);
        opUnlocked(IOMMU_IOAS_UNMAP, "IOMMU_IOAS_UNMAP", IOAS_UNMAP, IOAS_UNMAP.byteSize(), ioasCmds::unmap);
        op(IOMMU_IOAS_MAP_FILE, "IOMMU_IOAS_MAP_FILE", IOAS_MAP_FILE, IOAS_MAP_FILE.byteSize(), ioasCmds::mapFile);
        op(IOMMU_HWPT_ALLOC, "IOMMU_HWPT_ALLOC", HWPT_ALLOC, HWPT_ALLOC_MINSZ, this::hwptAlloc);
        op(IOMMU_GET_HW_INFO, "IOMMU_GET_HW_INFO", HW_INFO, HW_INFO_MINSZ, this::hwInfo);
        op(IOMMU_HWPT_SET_DIRTY_TRACKING, "IOMMU_HWPT_SET_DIRTY_TRACKING", HWPT_SET_DIRTY_TRACKING,
                HWPT_SET_DIRTY_TRACKING.byteSize(), this::setDirtyTracking);
        op(IOMMU_HWPT_GET_DIRTY_BITMAP, "IOMMU_HWPT_GET_DIRTY_BITMAP", HWPT_GET_DIRTY_BITMAP,
                HWPT_GET_DIRTY_BITMAP.byteSize(), this::getDirtyBitmap);
    }

    private void op(int cmd, String name, StructLayout s, long minsz, UcmdHandler h) {
        opUnlocked(cmd, name, s, minsz, u -> {
            synchronized (this) {
                return h.run(u);
            }
        });
    }

    /** A command whose handler takes the context's lock itself, for the parts that need it. */
    private void opUnlocked(int cmd, String name, StructLayout s, long minsz, UcmdHandler h) {
        table.add(new IoctlTable.Command(cmd, name, IoctlTable.Arg.STRUCT, minsz, s.byteSize(), -1,
                Errno.EOPNOTSUPP, IoctlTable.Tail.COPY_STRUCT, (arg, v) -> {
            long userSize = Integer.toUnsignedLong(arg.get(U32, 0));
            MemorySegment cmdCopy = MemorySegment.ofArray(new byte[(int) s.byteSize()]);
            MemorySegment.copy(arg, 0, cmdCopy, 0, Math.min(userSize, s.byteSize()));
            return h.run(new Ucmd(arg, cmdCopy, userSize));
        }));
    }

    /**
     * {@code iommufd_ctx_from_fd}: the context behind an open file.
     *
     * @throws ErrnoException {@code EBADFD} for a file that is not {@code /dev/iommu}
     */
    public static IommufdCtx fromFile(VfioFile file, int fd) {
        if (file instanceof IommufdCtx ctx) {
            return ctx;
        }
        throw new ErrnoException(Errno.EBADFD, "fd " + fd + " is not /dev/iommu but " + file);
    }

    @Override
    public long ioctl(int cmd, MemorySegment arg) {
        return table.dispatch(cmd, arg);
    }

    @Override
    public long ioctl(int cmd, long value) {
        return table.dispatch(cmd, value);
    }

    private int allocId() {
        int id = 1;
        while (objects.containsKey(id)) {
            id++;
        }
        return id;
    }

    /**
     * {@code iommufd_get_object}: {@code ENOENT} for an ID of no object or of one of another type than
     * {@code type} ({@code null}: any).
     */
    private IommufdObject get(int id, IommufdObject.Type type, String what) {
        IommufdObject o = objects.get(id);
        if (o == null || (type != null && o.type != type)) {
            throw new ErrnoException(Errno.ENOENT, String.format("%s: ID %d is %s", what,
                    Integer.toUnsignedLong(id), o == null ? "no object" : o + ", not " + type));
        }
        return o;
    }

    private Ioas ioas(int id, String what) {
        return (Ioas) get(id, IommufdObject.Type.IOAS, what);
    }

    /** A new IOAS with the lowest free ID ({@code iommufd_ioas_alloc}); under the lock. */
    Ioas allocIoas() {
        Ioas ioas = new Ioas(allocId(), who);
        objects.put(ioas.id, ioas);
        return ioas;
    }

    /**
     * {@code iommufd_destroy}: {@code ENOENT} for no object, {@code EBUSY} while another object holds it (an IOAS
     * with an HWPT, an HWPT with a device attached, a device VFIO holds).
     */
    private long destroy(Ucmd u) {
        int id = u.u32(DESTROY, "id");
        IommufdObject o = get(id, null, "IOMMU_DESTROY");
        if (o.users > 0) {
            throw new ErrnoException(Errno.EBUSY, "IOMMU_DESTROY: " + o + " is in use by " + o.users + " other object(s)");
        }
        switch (o) {
            case Ioas ioas -> ioas.unmapAll();
            case Hwpt h -> h.destroy(iommu);
            default -> throw new ErrnoException(Errno.EBUSY, "IOMMU_DESTROY: " + o + " is held by VFIO");
        }
        objects.remove(id);
        return 0;
    }

    /**
     * {@code iommufd_hwpt_alloc}: flags other than {@code DIRTY_TRACKING} (no nesting here) and {@code __reserved}
     * are {@code EOPNOTSUPP}; data with type NONE {@code EINVAL}; the device and the IOAS must exist
     * ({@code ENOENT}); another type of {@code pt_id} or a data type for an IOAS is {@code EINVAL}, a nested type on
     * an HWPT {@code EOPNOTSUPP}; dirty tracking on an IOMMU without it {@code EOPNOTSUPP}. The HWPT maps the IOAS's
     * mappings and is attached to nothing.
     */
    private long hwptAlloc(Ucmd u) {
        String what = "IOMMU_HWPT_ALLOC";
        int flags = u.u32(HWPT_ALLOC, "flags");
        if ((flags & ~IOMMU_HWPT_ALLOC_DIRTY_TRACKING) != 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, what + ": unsupported flags "
                    + Integer.toHexString(flags & ~IOMMU_HWPT_ALLOC_DIRTY_TRACKING));
        }
        u.reserved0(HWPT_ALLOC, what);
        int dataType = u.u32(HWPT_ALLOC, "data_type");
        if (dataType == IOMMU_HWPT_DATA_NONE && (u.u32(HWPT_ALLOC, "data_len") != 0
                || u.u64(HWPT_ALLOC, "data_uptr") != 0)) {
            throw new ErrnoException(Errno.EINVAL, what + ": data with data type NONE");
        }
        IommufdDevice idev = (IommufdDevice) get(u.u32(HWPT_ALLOC, "dev_id"), IommufdObject.Type.DEVICE, what);
        IommufdObject pt = get(u.u32(HWPT_ALLOC, "pt_id"), null, what);
        Ioas ioas = switch (pt) {
            case Ioas i when dataType == IOMMU_HWPT_DATA_NONE -> i;
            case Hwpt h when dataType != IOMMU_HWPT_DATA_NONE -> throw new ErrnoException(Errno.EOPNOTSUPP, what
                    + ": data type " + dataType + ": " + h + " cannot parent a nested page table here");
            default -> throw new ErrnoException(Errno.EINVAL, what + ": " + pt + " with data type " + dataType
                    + " is no parent for a page table");
        };
        boolean dirty = (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) != 0;
        if (dirty && !iommu.dirtyTracking()) {
            throw new ErrnoException(Errno.EOPNOTSUPP, what + ": the IOMMU of " + idev + " has no dirty tracking");
        }
        Hwpt h = Hwpt.alloc(allocId(), ioas, iommu, false, dirty);
        objects.put(h.id, h);
        u.setU32(HWPT_ALLOC, "out_hwpt_id", h.id);
        u.respond();
        return 0;
    }

    /**
     * {@code iommufd_get_hw_info}: flags and {@code __reserved} {@code EOPNOTSUPP}, the device {@code ENOENT}; no
     * driver-specific data (type NONE, {@code data_len} 0, the user's buffer zeroed), and
     * {@code IOMMU_HW_CAP_DIRTY_TRACKING} when the device's IOMMU has it.
     */
    private long hwInfo(Ucmd u) {
        String what = "IOMMU_GET_HW_INFO";
        if (u.u32(HW_INFO, "flags") != 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, what + ": flags " + Integer.toHexString(u.u32(HW_INFO, "flags")));
        }
        u.reserved0(HW_INFO, what);
        get(u.u32(HW_INFO, "dev_id"), IommufdObject.Type.DEVICE, what);
        long len = Integer.toUnsignedLong(u.u32(HW_INFO, "data_len"));
        if (len > 0) {
            mm.write(u.u64(HW_INFO, "data_uptr"), MemorySegment.ofArray(new byte[(int) Math.min(len, 1 << 20)]));
        }
        u.setU32(HW_INFO, "data_len", 0);
        u.setU32(HW_INFO, "out_data_type", IOMMU_HW_INFO_TYPE_NONE);
        u.setU64(HW_INFO, "out_capabilities", iommu.dirtyTracking() ? IOMMU_HW_CAP_DIRTY_TRACKING : 0);
        u.respond();
        return 0;
    }

    /** An HWPT with {@code dirty_ops}: {@code ENOENT} for no HWPT, {@code EOPNOTSUPP} without dirty tracking. */
    private Hwpt dirtyHwpt(int id, String what) {
        Hwpt h = (Hwpt) get(id, IommufdObject.Type.HWPT_PAGING, what);
        if (!h.dirtyTracking) {
            throw new ErrnoException(Errno.EOPNOTSUPP, what + ": " + h
                    + " was not allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING");
        }
        return h;
    }

    /** {@code iommufd_hwpt_set_dirty_tracking}: unknown flags or {@code __reserved} {@code EOPNOTSUPP}. */
    private long setDirtyTracking(Ucmd u) {
        String what = "IOMMU_HWPT_SET_DIRTY_TRACKING";
        int flags = u.u32(HWPT_SET_DIRTY_TRACKING, "flags");
        if ((flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE) != 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, what + ": unknown flags " + Integer.toHexString(flags));
        }
        u.reserved0(HWPT_SET_DIRTY_TRACKING, what);
        Hwpt h = dirtyHwpt(u.u32(HWPT_SET_DIRTY_TRACKING, "hwpt_id"), what);
        h.domain.setDirtyTracking((flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE) != 0);
        return 0;
    }

    /**
     * {@code iommufd_hwpt_get_dirty_bitmap} with {@code iommufd_check_iova_range}: unknown flags or
     * {@code __reserved} {@code EOPNOTSUPP}; a range that wraps {@code EOVERFLOW}; IOVA or end off the IOAS's
     * alignment, {@code page_size} 0, or IOVA or end off it, {@code EINVAL}; a range not mapped contiguously
     * {@code EINVAL}; tracking off {@code EINVAL}. Bit {@code n} of {@code data} (a little-endian {@code __u64}
     * array in user memory, bit {@code n % 64} of word {@code n / 64}) is set for the dirty page
     * {@code iova + n * page_size}; bits already set stay set, as {@code iova_bitmap_set} only sets them. Unless
     * {@code NO_CLEAR}, the dirty bits read are cleared.
     */
    private long getDirtyBitmap(Ucmd u) {
        String what = "IOMMU_HWPT_GET_DIRTY_BITMAP";
        int flags = u.u32(HWPT_GET_DIRTY_BITMAP, "flags");
        if ((flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) != 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, what + ": unknown flags " + Integer.toHexString(flags));
        }
        u.reserved0(HWPT_GET_DIRTY_BITMAP, what);
        Hwpt h = dirtyHwpt(u.u32(HWPT_GET_DIRTY_BITMAP, "hwpt_id"), what);
        long iova = u.u64(HWPT_GET_DIRTY_BITMAP, "iova");
        long length = u.u64(HWPT_GET_DIRTY_BITMAP, "length");
        long pageSize = u.u64(HWPT_GET_DIRTY_BITMAP, "page_size");
        long last = iova + length - 1;
        if (length == 0 || !Ioas.le(iova, last)) {
            throw new ErrnoException(Errno.EOVERFLOW, String.format("%s: %#x + %#x wraps", what, iova, length));
        }
        if (((iova | (last + 1)) & (PAGE - 1)) != 0 || pageSize == 0
                || ((iova | (last + 1)) & (pageSize - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: %#x-%#x is not aligned to page size %#x and "
                    + "the IOVA alignment %#x", what, iova, last, pageSize, PAGE));
        }
        if (!h.ioas.covered(iova, last)) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: %#x-%#x is not mapped contiguously in %s",
                    what, iova, last, h.ioas));
        }
        BitSet dirty = h.domain.readAndClearDirty(iova, length, pageSize,
                (flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) != 0);
        long bits = length / pageSize;
        long words = (bits + 63) / 64;
        long data = u.u64(HWPT_GET_DIRTY_BITMAP, "data");
        MemorySegment map = MemorySegment.ofArray(new byte[(int) (words * 8)]);
        mm.read(data, map);
        for (int b = dirty.nextSetBit(0); b >= 0; b = dirty.nextSetBit(b + 1)) {
            long at = (b / 64) * 8L;
            map.set(U64, at, map.get(U64, at) | 1L << (b % 64));
        }
        mm.write(data, map);
        return 0;
    }

    /**
     * {@code iommufd_ctx_has_group}: whether a device of IOMMU group {@code g} is bound here, so the group is this
     * context's and every device of it is owned through it ({@code vfio_iommufd_get_dev_id} answers a device ID or
     * {@code -ENOENT}).
     */
    public synchronized boolean hasGroup(IommuGroup g) {
        Igroup ig = groups.get(g);
        return ig != null && ig.bound > 0;
    }

    /**
     * {@code iommufd_device_bind}: the device's IOMMU group is claimed for this context with its first device
     * ({@code iommu_device_claim_dma_owner}: {@code EPERM} while another owner or a kernel driver holds it), and the
     * device gets an ID; it holds the context until unbound.
     */
    public synchronized IommufdDevice bind(Device dev) {
        IommuGroup g = iommu.groupOf(dev).orElseThrow(() -> new ErrnoException(Errno.ENODEV,
                "iommufd_device_bind: " + dev.name() + " has no IOMMU group"));
        Igroup ig = groups.get(g);
        if (ig == null) {
            g.claimDmaOwner(this);
            ig = new Igroup();
            groups.put(g, ig);
        }
        ig.bound++;
        IommufdDevice idev = new IommufdDevice(allocId(), this, dev, g);
        idev.users = 1;
        objects.put(idev.id, idev);
        refs++;
        return idev;
    }

    /**
     * {@code iommufd_access_create}: a new access object, held by its driver (so {@code IOMMU_DESTROY} of its ID is
     * {@code EBUSY}) and holding the context ({@code iommufd_ctx_get}) until {@link IommufdAccess#destroy}.
     */
    public synchronized IommufdAccess createAccess(IommufdAccess.Ops ops) {
        ErrnoException.requireNonNull(ops, "iommufd_access_create: ops");
        Access a = new Access(allocId(), this, ops, mm.memory());
        a.users = 1;
        objects.put(a.id, a);
        refs++;
        return a;
    }

    /** The IOAS {@code id} names, for an access ({@code iommufd_get_ioas}): {@code ENOENT} for another object. */
    Ioas ioasFor(int id, String what) {
        return ioas(id, what);
    }

    /** An access destroyed: its ID goes, and its reference to the context. */
    void accessDestroyed(Access a) {
        objects.remove(a.id);
        put();
    }

    /** The device unbound: its ID goes, the group's ownership with its last device, and the device's reference. */
    void unbound(IommufdDevice idev) {
        objects.remove(idev.id);
        Igroup ig = groups.get(idev.group());
        if (--ig.bound == 0) {
            groups.remove(idev.group());
            idev.group().releaseDmaOwner(this);
        }
        put();
    }

    /**
     * What {@code pt_id} names for an attach: an HWPT, or for an IOAS its auto domain (one made already, else a new
     * one, {@code iommufd_device_auto_get_domain}); {@code ENOENT} for no object, {@code EINVAL} for another type.
     */
    Hwpt resolvePt(int ptId) {
        IommufdObject o = get(ptId, null, "attach");
        return switch (o) {
            case Hwpt h -> h;
            case Ioas ioas -> {
                for (Hwpt h : ioas.hwpts) {
                    if (h.auto) {
                        yield h;
                    }
                }
                Hwpt h = Hwpt.alloc(allocId(), ioas, iommu, true, false);
                objects.put(h.id, h);
                yield h;
            }
            default -> throw new ErrnoException(Errno.EINVAL, "attach: " + o + " is neither an IOAS nor an HWPT");
        };
    }

    /** An auto domain no device uses any more is destroyed. */
    void dropIfUnused(Hwpt h) {
        if (h.auto && h.devices == 0 && objects.get(h.id) == h) {
            h.destroy(iommu);
            objects.remove(h.id);
        }
    }

    /**
     * The group of {@code idev} attaches to {@code h} with its first device ({@code iommu_attach_group}); a group
     * whose devices use another page table is {@code EINVAL}.
     */
    void attachGroup(IommufdDevice idev, Hwpt h) {
        Igroup ig = groups.get(idev.group());
        if (ig.hwpt != null && ig.hwpt != h) {
            throw new ErrnoException(Errno.EINVAL, "attach " + idev + ": its IOMMU group is attached to " + ig.hwpt);
        }
        if (ig.hwpt == null) {
            idev.group().attach(this, h.domain);
            ig.hwpt = h;
        }
        ig.attached++;
    }

    /** The devices of {@code g} attached to {@code h}. */
    List<IommufdDevice> attachedDevices(IommuGroup g, Hwpt h) {
        List<IommufdDevice> out = new ArrayList<>();
        for (IommufdObject o : objects.values()) {
            if (o instanceof IommufdDevice d && d.group() == g && d.attached() && groups.get(g).hwpt == h) {
                out.add(d);
            }
        }
        return out;
    }

    /** {@code iommu_group_replace_domain}: straight from the old domain to the new one. */
    void replaceGroup(IommuGroup g, Hwpt old, Hwpt h) {
        Igroup ig = groups.get(g);
        if (ig.hwpt != old) {
            throw new ErrnoException(Errno.EINVAL, "replace: the IOMMU group is attached to " + ig.hwpt);
        }
        g.attach(this, h.domain);
        ig.hwpt = h;
    }

    /** The device leaves the group's page table; the last one blocks the group's DMA. */
    void detachGroup(IommufdDevice idev, Hwpt h) {
        Igroup ig = groups.get(idev.group());
        if (--ig.attached == 0) {
            idev.group().detach(this);
            ig.hwpt = null;
        }
    }

    /** The descriptor closed ({@code iommufd_fops_release} once the bound devices let the context go too). */
    @Override
    public void release() {
        synchronized (this) {
            put();
        }
    }

    private void put() {
        if (--refs > 0) {
            return;
        }
        // iommufd_fops_release: objects whose users dropped to zero, HWPTs before their IOAS
        for (IommufdObject o : new ArrayList<>(objects.values())) {
            if (o instanceof Hwpt h) {
                h.destroy(iommu);
                objects.remove(h.id);
            }
        }
        for (IommufdObject o : new ArrayList<>(objects.values())) {
            if (o instanceof Ioas ioas) {
                ioas.unmapAll();
                objects.remove(ioas.id);
            }
        }
        if (!objects.isEmpty()) {
            LOG.error("{}: objects left at release: {}", this, objects.values());
        }
    }

    @Override
    public String toString() {
        return "/dev/iommu of " + who;
    }
}
