package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.PciBus;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.VfioLayouts;
import dev.dmaplane.vfio.uapi.CapChain;
import dev.dmaplane.vfio.uapi.IoctlTable;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioUapi.*;

/**
 * A vfio-pci device file ({@code vfio_device_fops} over {@code vfio_pci_core_*} of
 * {@code drivers/vfio/pci/vfio_pci_core.c} and {@code vfio_pci_rdwr.c}): device and region info, region reads and
 * writes at {@code index << 40}, BAR mmaps, reset; config space through {@link VirtConfig}. The first open
 * enables the device (a reset when it can FLR); the last close disables bus mastering and resets it again, so the
 * next user finds it clean ({@code vfio_pci_core_enable}/{@code vfio_pci_core_disable}).
 */
final class DeviceFile implements VfioFile {
    /** What holds a device file open: its group's file, or the device cdev; told when the file closes. */
    interface Owner {
        void deviceClosed();
    }

    private static final long PAGE = 4096;
    private static final long OFFSET_MASK = (1L << VFIO_PCI_OFFSET_SHIFT) - 1;

    private final UserImpl user;
    private final Owner group;
    private final VfioPciDevice dev;
    private final PciFunction fn;
    private final IoctlTable table;
    private final DeviceFeature feature;
    private boolean released;

    DeviceFile(UserImpl user, Owner group, VfioPciDevice dev) {
        this.user = user;
        this.group = group;
        this.dev = dev;
        this.fn = dev.function();
        this.feature = new DeviceFeature(user, dev);
        this.table = IoctlTable.enotty("vfio device " + dev.name())
                .struct(VFIO_DEVICE_GET_INFO, "VFIO_DEVICE_GET_INFO", DEVICE_INFO_MINSZ, -1, Errno.EINVAL,
                        (arg, v) -> info(arg))
                .struct(VFIO_DEVICE_GET_REGION_INFO, "VFIO_DEVICE_GET_REGION_INFO", REGION_INFO_MINSZ, -1,
                        Errno.EINVAL, (arg, v) -> regionInfo(arg))
                .struct(VFIO_DEVICE_GET_IRQ_INFO, "VFIO_DEVICE_GET_IRQ_INFO", IRQ_INFO.byteSize(), -1,
                        Errno.EINVAL, (arg, v) -> irqInfo(arg))
                .struct(VFIO_DEVICE_SET_IRQS, "VFIO_DEVICE_SET_IRQS", VfioIrqs.SET_MINSZ, -1, Errno.EINVAL,
                        (arg, v) -> dev.irqs().set(arg, user::eventfd))
                .value(VFIO_DEVICE_RESET, "VFIO_DEVICE_RESET", (arg, v) -> reset())
                .struct(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
                        HOT_RESET_INFO.byteSize(), -1, Errno.EINVAL, (arg, v) -> hotResetInfo(arg))
                .struct(VFIO_DEVICE_PCI_HOT_RESET, "VFIO_DEVICE_PCI_HOT_RESET", PCI_HOT_RESET.byteSize(), 0,
                        Errno.EINVAL, (arg, v) -> HotReset.run(user, dev, group, arg))
                .struct(VFIO_DEVICE_FEATURE, "VFIO_DEVICE_FEATURE", DEVICE_FEATURE.byteSize(),
                        DeviceFeature.KNOWN_FLAGS, Errno.EINVAL, (arg, v) -> feature.run(arg));
        dev.opened(this);
    }

    /** {@code vfio_pci_ioctl_get_info}: {@code PCI}, {@code RESET} when the function can FLR, 9 regions, 5 IRQs. */
    private long info(MemorySegment arg) {
        long minsz = Math.min(Integer.toUnsignedLong(arg.get(U32, 0)), DEVICE_INFO.byteSize());
        MemorySegment out = arg.asSlice(0, minsz);
        out.set(U32, 4, VFIO_DEVICE_FLAGS_PCI | (fn.hasFlr() ? VFIO_DEVICE_FLAGS_RESET : 0));
        out.set(U32, 8, VFIO_PCI_NUM_REGIONS);
        out.set(U32, 12, VFIO_PCI_NUM_IRQS);
        return 0;
    }

    /** A region as {@code vfio_pci_core_get_region_info} describes it. */
    private record Region(int flags, long size, List<long[]> sparse) {
    }

    /**
     * The region at {@code index}: {@code EINVAL} past the nine vfio-pci regions, and for the VGA region of a
     * function that is not VGA.
     */
    private Region region(int index) {
        if (index < 0 || index >= VFIO_PCI_NUM_REGIONS || index == VFIO_PCI_VGA_REGION_INDEX) {
            throw new ErrnoException(Errno.EINVAL, dev.name() + ": no region " + Integer.toUnsignedString(index)
                    + (index == VFIO_PCI_VGA_REGION_INDEX ? " (not a VGA device)" : ""));
        }
        if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
            return new Region(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, dev.config().size(), List.of());
        }
        if (index == VFIO_PCI_ROM_REGION_INDEX) {
            return new Region(0, 0, List.of());
        }
        Bar bar = fn.bar(index).orElse(null);
        if (bar == null) {
            return new Region(0, 0, List.of());
        }
        int flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        if ((bar.size() & (PAGE - 1)) == 0) {
            flags |= VFIO_REGION_INFO_FLAG_MMAP;
        }
        Msix msix = fn.msix().orElse(null);
        List<long[]> sparse = List.of();
        if (msix != null && msix.bar() == index && (flags & VFIO_REGION_INFO_FLAG_MMAP) != 0) {
            long[] table = msixTable(msix);
            sparse = new ArrayList<>();
            if (table[0] > 0) {
                sparse.add(new long[]{0, table[0]});
            }
            if (table[1] < bar.size()) {
                sparse.add(new long[]{table[1], bar.size() - table[1]});
            }
        }
        return new Region(flags, bar.size(), sparse);
    }

    /** The pages the MSI-X table occupies in its BAR, {@code [start, end)}. */
    private static long[] msixTable(Msix msix) {
        long start = msix.tableOffset() & ~(PAGE - 1);
        long end = (msix.tableOffset() + (long) msix.vectors() * 16 + PAGE - 1) & ~(PAGE - 1);
        return new long[]{start, end};
    }

    /**
     * {@code vfio_pci_core_get_region_info}: flags, size and the region's offset in the file; the MSI-X BAR carries
     * {@code VFIO_REGION_INFO_CAP_SPARSE_MMAP} with the areas around the MSI-X table (vfio-pci before the table
     * became mappable, {@code msix_sparse_mmap_cap}); when {@code argsz} is too small for it, {@code argsz} grows.
     */
    private long regionInfo(MemorySegment arg) {
        long argsz = Integer.toUnsignedLong(arg.get(U32, 0));
        int index = VfioLayouts.u32(arg, REGION_INFO, "index");
        Region r = region(index);
        CapChain caps = new CapChain();
        if (!r.sparse().isEmpty()) {
            MemorySegment cap = caps.add(CAP_SPARSE_MMAP.byteSize() + r.sparse().size() * SPARSE_MMAP_AREA.byteSize(),
                    VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1);
            cap.set(U32, offset(CAP_SPARSE_MMAP, "nr_areas"), r.sparse().size());
            for (int i = 0; i < r.sparse().size(); i++) {
                long at = CAP_SPARSE_MMAP.byteSize() + i * SPARSE_MMAP_AREA.byteSize();
                cap.set(U64, at, r.sparse().get(i)[0]);
                cap.set(U64, at + 8, r.sparse().get(i)[1]);
            }
        }
        int flags = r.flags() | (caps.isEmpty() ? 0 : VFIO_REGION_INFO_FLAG_CAPS);
        int capOffset = caps.copyOut(arg, REGION_INFO.byteSize(), argsz);
        if (!caps.isEmpty() && capOffset == 0) {
            setU32(arg, REGION_INFO, "argsz", (int) (REGION_INFO.byteSize() + caps.size()));
        }
        setU32(arg, REGION_INFO, "flags", flags);
        setU32(arg, REGION_INFO, "cap_offset", capOffset);
        setU64(arg, REGION_INFO, "size", r.size());
        setU64(arg, REGION_INFO, "offset", regionOffset(index));
        return 0;
    }

    /**
     * {@code vfio_pci_ioctl_get_irq_info}: {@code EINVAL} past the five indexes and for ERR on a conventional PCI
     * function; {@code EVENTFD} always, INTx {@code MASKABLE | AUTOMASKED}, the others {@code NORESIZE}.
     */
    private long irqInfo(MemorySegment arg) {
        int index = u32(arg, IRQ_INFO, "index");
        if (index < 0 || index >= VFIO_PCI_NUM_IRQS || (index == VFIO_PCI_ERR_IRQ_INDEX && !fn.isPcie())) {
            throw new ErrnoException(Errno.EINVAL, dev.name() + ": VFIO_DEVICE_GET_IRQ_INFO: no IRQ index "
                    + Integer.toUnsignedString(index));
        }
        int flags = VFIO_IRQ_INFO_EVENTFD | (index == VFIO_PCI_INTX_IRQ_INDEX
                ? VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED : VFIO_IRQ_INFO_NORESIZE);
        setU32(arg, IRQ_INFO, "flags", flags);
        setU32(arg, IRQ_INFO, "count", dev.irqs().count(index));
        return 0;
    }

    /**
     * {@code vfio_pci_ioctl_get_pci_hot_reset_info}: the functions a secondary bus reset above this one would reset
     * with it (its bus and every bus below), each with its IOMMU group, bus and devfn. {@code ENODEV} on a root bus
     * (no bridge to reset it, {@code pci_probe_reset_bus}); {@code ENOSPC} with {@code count} written back when
     * {@code argsz} holds fewer entries.
     */
    private long hotResetInfo(MemorySegment arg) {
        long argsz = Integer.toUnsignedLong(arg.get(U32, 0));
        PciBus bus = fn.pciBus();
        if (bus.isRoot() || bus.self().isEmpty()) {
            throw new ErrnoException(Errno.ENODEV, dev.name() + ": on root bus " + bus + ": no bus reset");
        }
        List<PciFunction> affected = HotReset.affected(bus);
        setU32(arg, HOT_RESET_INFO, "flags", 0);
        setU32(arg, HOT_RESET_INFO, "count", affected.size());
        long need = HOT_RESET_INFO.byteSize() + affected.size() * DEPENDENT_DEVICE.byteSize();
        if (argsz < need) {
            throw new ErrnoException(Errno.ENOSPC, dev.name() + ": VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: argsz " + argsz
                    + " holds fewer than the " + affected.size() + " functions a bus reset affects");
        }
        for (int i = 0; i < affected.size(); i++) {
            PciFunction f = affected.get(i);
            int groupId = dev.core().machine().iommu().groupOf(f).map(g -> g.id()).orElseThrow(() ->
                    new ErrnoException(Errno.EPERM, f.name() + " has no IOMMU group (vfio_pci_fill_devs)"));
            long at = HOT_RESET_INFO.byteSize() + i * DEPENDENT_DEVICE.byteSize();
            arg.set(U32, at, groupId);
            arg.set(U16, at + 4, (short) f.bdf().domain());
            arg.set(ValueLayout.JAVA_BYTE, at + 6, (byte) f.bdf().bus());
            arg.set(ValueLayout.JAVA_BYTE, at + 7, (byte) f.bdf().devfn());
        }
        return 0;
    }

    /** {@code VFIO_DEVICE_RESET}: {@code EINVAL} when the function cannot reset ({@code vdev->reset_works}). */
    private long reset() {
        if (!fn.hasFlr()) {
            throw new ErrnoException(Errno.EINVAL, dev.name() + ": VFIO_DEVICE_RESET: the function cannot FLR");
        }
        dev.reset();
        return 0;
    }

    @Override
    public long ioctl(int cmd, MemorySegment arg) {
        dev.requirePresent("ioctl");
        return table.dispatch(cmd, arg);
    }

    @Override
    public long ioctl(int cmd, long value) {
        dev.requirePresent("ioctl");
        return table.dispatch(cmd, value);
    }

    @Override
    public long read(MemorySegment dst, long offset) {
        return rw(dst, offset, false);
    }

    @Override
    public long write(MemorySegment src, long offset) {
        return rw(src, offset, true);
    }

    /**
     * {@code vfio_pci_rw}: the region is the offset's top bits; config through {@link VirtConfig}, BARs through
     * {@code vfio_pci_bar_rw} (a start past the BAR is {@code EINVAL}, the count is cut at its end; the MSI-X table
     * reads all-ones and drops writes; {@code EIO} while the function does not decode memory).
     */
    private long rw(MemorySegment buf, long offset, boolean write) {
        dev.requirePresent(write ? "pwrite" : "pread");
        int index = (int) (offset >>> VFIO_PCI_OFFSET_SHIFT);
        long pos = offset & OFFSET_MASK;
        Region r = region(index);
        String what = String.format("%s %s region %d at %#x+%d", dev.name(), write ? "pwrite" : "pread", index, pos,
                buf.byteSize());
        if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
            byte[] bytes = new byte[(int) Math.min(buf.byteSize(), Integer.MAX_VALUE)];
            if (write) {
                MemorySegment.copy(buf, ValueLayout.JAVA_BYTE, 0, bytes, 0, bytes.length);
                dev.configWrite((int) Math.min(pos, Integer.MAX_VALUE), bytes);
            } else {
                dev.config().read((int) Math.min(pos, Integer.MAX_VALUE), bytes);
                MemorySegment.copy(bytes, 0, buf, ValueLayout.JAVA_BYTE, 0, bytes.length);
            }
            return bytes.length;
        }
        if (r.size() == 0 || pos >= r.size()) {
            throw new ErrnoException(Errno.EINVAL, what + ": outside the region's " + r.size() + " bytes");
        }
        if (!fn.configSpace().memorySpaceEnabled()) {
            throw new ErrnoException(Errno.EIO, what + ": memory decoding is off");
        }
        long count = Math.min(buf.byteSize(), r.size() - pos);
        Bar bar = fn.bar(index).orElseThrow();
        if (bar.backing() instanceof Bar.Memory mem) {
            if (write) {
                mem.write(pos, buf.asSlice(0, count));
            } else {
                mem.read(pos, buf.asSlice(0, count));
            }
            return count;
        }
        Bar.Mmio mmio = bar.mmio();
        long[] excluded = fn.msix().filter(m -> m.bar() == index)
                .map(m -> new long[]{m.tableOffset(), m.tableOffset() + (long) m.vectors() * 16}).orElse(null);
        for (long done = 0; done < count; ) {
            long at = pos + done;
            int n = ioPiece(at, count - done);
            boolean hidden = excluded != null && at < excluded[1] && at + n > excluded[0];
            if (write) {
                if (!hidden) {
                    mmio.write(at, n, getLe(buf, done, n));
                }
            } else {
                putLe(buf, done, n, hidden ? -1L : mmio.read(at, n));
            }
            done += n;
        }
        return count;
    }

    /** {@code vfio_pci_core_do_io_rw}'s split: the largest naturally aligned access of 8, 4, 2 or 1 bytes. */
    private static int ioPiece(long at, long left) {
        for (int n = 8; n > 1; n >>= 1) {
            if ((at & (n - 1)) == 0 && left >= n) {
                return n;
            }
        }
        return 1;
    }

    private static long getLe(MemorySegment s, long at, int n) {
        long v = 0;
        for (int b = 0; b < n; b++) {
            v |= (s.get(ValueLayout.JAVA_BYTE, at + b) & 0xffL) << (8 * b);
        }
        return v;
    }

    private static void putLe(MemorySegment s, long at, int n, long v) {
        for (int b = 0; b < n; b++) {
            s.set(ValueLayout.JAVA_BYTE, at + b, (byte) (v >>> (8 * b)));
        }
    }

    /**
     * {@code vfio_pci_core_mmap} of a BAR: {@code EINVAL} for another region, a BAR without
     * {@code VFIO_REGION_INFO_FLAG_MMAP}, a range past the BAR, or one over the MSI-X table's pages; else a
     * {@code VM_IO | VM_PFNMAP} mapping of the BAR in the user's address space.
     */
    @Override
    public long mmap(long offset, long length, int prot) {
        dev.requirePresent("mmap");
        int index = (int) (offset >>> VFIO_PCI_OFFSET_SHIFT);
        long pos = offset & OFFSET_MASK;
        String what = String.format("%s mmap region %d at %#x+%#x", dev.name(), index, pos, length);
        if (index >= VFIO_PCI_ROM_REGION_INDEX || index < 0) {
            throw new ErrnoException(Errno.EINVAL, what + ": only BARs can be mapped");
        }
        Region r = region(index);
        if ((r.flags() & VFIO_REGION_INFO_FLAG_MMAP) == 0) {
            throw new ErrnoException(Errno.EINVAL, what + ": the BAR cannot be mapped");
        }
        if (length <= 0 || (pos & (PAGE - 1)) != 0 || pos + length > r.size() || pos + length < pos) {
            throw new ErrnoException(Errno.EINVAL, what + ": outside the BAR's " + r.size() + " bytes or unaligned");
        }
        Msix msix = fn.msix().orElse(null);
        if (msix != null && msix.bar() == index) {
            long[] t = msixTable(msix);
            if (pos < t[1] && pos + length > t[0]) {
                throw new ErrnoException(Errno.EINVAL, what + ": overlaps the MSI-X table at "
                        + Long.toHexString(t[0]) + "-" + Long.toHexString(t[1]));
            }
        }
        if (!Prot.isValid(prot)) {
            throw new ErrnoException(Errno.EINVAL, what + ": unknown prot bits " + prot);
        }
        return user.mm().mmapBar(fn, index, pos, length, prot);
    }

    @Override
    public void release() {
        synchronized (this) {
            if (released) {
                return;
            }
            released = true;
        }
        dev.closed(this);
        group.deviceClosed();
    }

    @Override
    public String toString() {
        return "vfio device " + dev.name() + " of " + user;
    }
}
