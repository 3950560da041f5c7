package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciFunction;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A PCI function bound to vfio-pci ({@code struct vfio_pci_core_device}): its group, the device files users opened,
 * and whether the driver still holds it.
 */
final class VfioPciDevice {
    private final VfioCore core;
    private final PciFunction fn;
    private final GroupState group;
    private final List<DeviceFile> files = new CopyOnWriteArrayList<>();
    private volatile boolean removed;

    VfioPciDevice(VfioCore core, PciFunction fn, GroupState group) {
        this.core = core;
        this.fn = fn;
        this.group = group;
    }

    String name() {
        return fn.name();
    }

    PciFunction function() {
        return fn;
    }

    GroupState group() {
        return group;
    }

    VfioCore core() {
        return core;
    }

    /** Fails with {@code ENODEV} once the driver let the device go. */
    void requirePresent(String op) {
        if (removed) {
            throw new ErrnoException(Errno.ENODEV, name() + ": " + op + ": the device left vfio-pci");
        }
    }

    void opened(DeviceFile f) {
        files.add(f);
    }

    void closed(DeviceFile f) {
        files.remove(f);
    }

    int openFiles() {
        return files.size();
    }

    /**
     * {@code vfio_pci_remove}: the device leaves its group; files users still hold fail with {@code ENODEV} from now
     * on and release what they hold.
     */
    void unregister() {
        removed = true;
        for (DeviceFile f : files) {
            f.revoke();
        }
        core.unregister(this);
    }

    @Override
    public String toString() {
        return "vfio-pci " + name();
    }
}
