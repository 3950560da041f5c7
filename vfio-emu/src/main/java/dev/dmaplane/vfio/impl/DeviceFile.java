package dev.dmaplane.vfio.impl;

import dev.dmaplane.vfio.uapi.IoctlTable;

import java.lang.foreign.MemorySegment;

/** A vfio-pci device file ({@code vfio_device_fops} over {@code vfio_pci_ops}). */
final class DeviceFile implements VfioFile {
    private final UserImpl user;
    private final GroupFile group;
    private final VfioPciDevice dev;
    private final IoctlTable table;
    private boolean released;

    DeviceFile(UserImpl user, GroupFile group, VfioPciDevice dev) {
        this.user = user;
        this.group = group;
        this.dev = dev;
        this.table = IoctlTable.enotty("vfio device " + dev.name());
        dev.opened(this);
    }

    /** The device left vfio-pci: every later operation is {@code ENODEV}. */
    void revoke() {
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
