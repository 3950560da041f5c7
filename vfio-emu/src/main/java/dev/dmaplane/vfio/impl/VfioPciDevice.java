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
    private VirtConfig config;

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

    /**
     * A device file opened; the first enables the device ({@code vfio_pci_core_enable}): a function-level reset
     * where the function can, then the user's view of config space starts from the hardware's.
     */
    synchronized void opened(DeviceFile f) {
        if (files.isEmpty()) {
            if (fn.hasFlr()) {
                fn.resetFunction();
            }
            config = new VirtConfig(fn);
        }
        files.add(f);
    }

    /**
     * A device file closed; the last disables the device ({@code vfio_pci_core_disable}): bus mastering off and a
     * reset, so nothing the user programmed keeps running.
     */
    synchronized void closed(DeviceFile f) {
        if (!files.remove(f) || !files.isEmpty()) {
            return;
        }
        config = null;
        if (!removed && fn.isPresent()) {
            fn.setMaster(false);
            if (fn.hasFlr()) {
                fn.resetFunction();
            }
        }
    }

    /** The user's view of config space while a file is open. */
    synchronized VirtConfig config() {
        if (config == null) {
            throw new ErrnoException(Errno.ENODEV, name() + ": no device file is open");
        }
        return config;
    }

    int openFiles() {
        return files.size();
    }

    /**
     * {@code vfio_pci_remove}: the device leaves its group; files users still hold fail with {@code ENODEV} from now
     * on (the kernel's wait for them to close, with the REQ interrupt, is not modelled yet).
     */
    void unregister() {
        removed = true;
        core.unregister(this);
    }

    @Override
    public String toString() {
        return "vfio-pci " + name();
    }
}
