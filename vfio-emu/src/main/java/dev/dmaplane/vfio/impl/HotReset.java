package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciBus;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.impl.iommufd.IommufdCtx;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static dev.dmaplane.vfio.VfioLayouts.*;

/**
 * {@code VFIO_DEVICE_PCI_HOT_RESET} of both front ends ({@code vfio_pci_ioctl_pci_hot_reset},
 * {@code vfio_pci_ioctl_pci_hot_reset_groups} and {@code vfio_pci_dev_set_hot_reset} in
 * {@code drivers/vfio/pci/vfio_pci_core.c}): a secondary bus reset of the device's bus, allowed only when every
 * function it reaches is bound to vfio-pci (the device set) and belongs to a group whose fd the user passed, or, for
 * a device opened through its cdev (a zero-length array), is owned by the iommufd the device is bound to. Each
 * device of the set is held under its {@code memory_lock} across the reset with its dma-bufs revoked and its BAR
 * mappings zapped; the dma-bufs come back after it for devices that are open and decode memory.
 */
final class HotReset {
    private HotReset() {
    }

    /** {@code pci_walk_bus}: the functions of {@code bus} and of every bus below it. */
    static List<PciFunction> affected(PciBus bus) {
        List<PciFunction> out = new ArrayList<>();
        collect(bus, out);
        return out;
    }

    private static void collect(PciBus bus, List<PciFunction> out) {
        out.addAll(bus.devices());
        for (PciBus child : bus.children()) {
            collect(child, out);
        }
    }

    /**
     * The ioctl after {@code argsz} and {@code flags} were checked. A device opened through its group passes group
     * fds; one opened through its cdev passes none, and every function the reset reaches must then be owned by the
     * iommufd context the device is bound to: bound to it, or in an IOMMU group a device bound to it owns
     * ({@code vfio_iommufd_get_dev_id}).
     *
     * @throws ErrnoException {@code EINVAL} for a zero-length array from a group-opened device or group fds from a
     *                        cdev-opened one ({@code !!hdr.count == vfio_device_cdev_opened}), more fds than
     *                        functions the reset reaches, an fd that is no group, a function of the bus not bound to
     *                        vfio-pci, in a group the user did not pass or not owned by the device's iommufd;
     *                        {@code ENODEV} on a root bus; {@code EFAULT} for fds past the user's buffer;
     *                        {@code EBADF} for an fd not open
     */
    static long run(UserImpl user, VfioPciDevice dev, DeviceFile.Owner owner, MemorySegment arg) {
        String what = dev.name() + ": VFIO_DEVICE_PCI_HOT_RESET";
        long count = Integer.toUnsignedLong(u32(arg, PCI_HOT_RESET, "count"));
        IommufdCtx ictx = owner instanceof CdevFile cdev ? cdev.ictx() : null;
        if ((count != 0) == (ictx != null)) {
            throw new ErrnoException(Errno.EINVAL, what + (ictx == null
                    ? ": a zero-length array is only for a device opened through its cdev; this one was opened"
                    + " through its group"
                    : ": " + count + " group fds for a device opened through its cdev, which passes a zero-length"
                    + " array"));
        }
        PciFunction fn = dev.function();
        PciBus bus = fn.pciBus();
        if (bus.isRoot() || bus.self().isEmpty()) {
            throw new ErrnoException(Errno.ENODEV, what + ": on root bus " + bus + ": no bus reset (pci_probe_reset_bus)");
        }
        List<PciFunction> functions = affected(bus);
        if (count > functions.size()) {
            throw new ErrnoException(Errno.EINVAL, what + ": " + count + " group fds for the " + functions.size()
                    + " functions the reset reaches");
        }
        long need = PCI_HOT_RESET.byteSize() + count * 4;
        if (arg.byteSize() < need) {
            throw new ErrnoException(Errno.EFAULT, what + ": copy_from_user of " + count + " group fds past the "
                    + arg.byteSize() + "-byte buffer");
        }
        Set<GroupState> groups = new HashSet<>();
        for (int i = 0; i < count; i++) {
            int fd = arg.get(U32, PCI_HOT_RESET.byteSize() + 4L * i);
            if (!(user.file(fd) instanceof GroupFile g)) {
                throw new ErrnoException(Errno.EINVAL, what + ": fd " + fd + " is not a vfio group");
            }
            groups.add(g.group());
        }
        List<VfioPciDevice> set = new ArrayList<>();
        for (PciFunction f : functions) {
            VfioPciDevice d = dev.core().device(f).orElseThrow(() -> new ErrnoException(Errno.EINVAL, what + ": "
                    + f.name() + " on the bus is not bound to vfio-pci, so not in the device set"
                    + " (vfio_pci_dev_set_resettable)"));
            if (ictx != null) {
                if (!ictx.hasGroup(d.group().iommuGroup())) {
                    throw new ErrnoException(Errno.EINVAL, what + ": " + f.name() + " (IOMMU group "
                            + d.group().iommuGroup().id() + ") is not owned by the iommufd " + dev.name()
                            + " is bound to (vfio_iommufd_get_dev_id)");
                }
            } else if (!groups.contains(d.group())) {
                throw new ErrnoException(Errno.EINVAL, what + ": " + f.name() + " is in group " + d.group().id()
                        + ", which the user did not pass (vfio_dev_in_groups)");
            }
            set.add(d);
        }
        resetLocked(fn, set, 0);
        return 0;
    }

    /** Takes the {@code memory_lock} of each device in order, revoking and zapping, then resets the bus. */
    private static void resetLocked(PciFunction fn, List<VfioPciDevice> set, int i) {
        if (i == set.size()) {
            fn.resetBus();
            return;
        }
        VfioPciDevice d = set.get(i);
        synchronized (d.dmaBufs()) {
            d.dmaBufs().move(true, "bus reset");
            d.function().zapBarMappings("vfio-pci: bus reset");
            try {
                resetLocked(fn, set, i + 1);
            } finally {
                if (d.openFiles() > 0 && d.memoryEnabled()) {
                    d.dmaBufs().move(false, "bus reset done");
                }
            }
        }
    }
}
