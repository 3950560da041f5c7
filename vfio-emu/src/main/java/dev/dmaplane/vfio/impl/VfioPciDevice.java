package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.List;
import java.util.concurrent.TimeUnit;
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
    /** The BAR dma-bufs; its monitor is the device's {@code memory_lock}, taken before a file's state. */
    private final BarDmaBufs dmaBufs;
    private static final Logger LOG = LoggerFactory.getLogger(VfioPciDevice.class);

    private volatile boolean removed;
    /** Set when the driver starts letting the device go: a file closed now leaves the hardware alone. */
    private volatile boolean removing;
    private VirtConfig config;
    private VfioIrqs irqs;

    VfioPciDevice(VfioCore core, PciFunction fn, GroupState group) {
        this.core = core;
        this.fn = fn;
        this.group = group;
        this.dmaBufs = new BarDmaBufs(this);
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

    /** The dma-bufs exported of the BARs ({@code vdev->dmabufs}). */
    BarDmaBufs dmaBufs() {
        return dmaBufs;
    }

    /**
     * A user's write to config space ({@code vfio_basic_config_write} for the command register): a write that
     * clears Memory Space Enable first revokes the BAR dma-bufs ({@code vfio_pci_dma_buf_move}) and, once the
     * function stopped decoding, zaps the user's BAR mappings ({@code vfio_pci_zap_bars}), so a later access faults
     * and is {@code SIGBUS} until decoding is back ({@code vfio_pci_mmap_huge_fault} checks
     * {@code __vfio_pci_memory_enabled}); all under the {@code memory_lock}. After any write to the command register
     * the dma-bufs come back if the function decodes memory. The zap follows the write so that no access between
     * the two can fault a page in again.
     */
    void configWrite(int pos, byte[] bytes) {
        VirtConfig c = config();
        synchronized (dmaBufs) {
            int command = PciRegs.COMMAND;
            boolean touchesCommand = pos <= command && pos + bytes.length > command;
            boolean memoryOff = touchesCommand && (bytes[command - pos] & PciRegs.COMMAND_MEMORY) == 0;
            if (memoryOff) {
                dmaBufs.move(true, "the user cleared Memory Space Enable");
            }
            try {
                c.write(pos, bytes);
            } finally {
                if (touchesCommand && memoryEnabled()) {
                    dmaBufs.move(false, "the user set Memory Space Enable");
                } else if (memoryOff) {
                    fn.zapBarMappings("vfio-pci: the user cleared Memory Space Enable");
                }
            }
        }
    }

    /**
     * {@code VFIO_DEVICE_RESET} ({@code vfio_pci_ioctl_reset}): the BAR dma-bufs are revoked across the
     * function-level reset and restored after it if the function decodes memory again.
     */
    void reset() {
        synchronized (dmaBufs) {
            dmaBufs.move(true, "function reset");
            try {
                fn.resetFunction();
            } finally {
                if (fn.isPresent() && memoryEnabled()) {
                    dmaBufs.move(false, "function reset done");
                }
            }
        }
    }

    /** {@code __vfio_pci_memory_enabled}: the function decodes memory (Memory Space Enable, not D3hot). */
    boolean memoryEnabled() {
        return fn.configSpace().memorySpaceEnabled();
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
            irqs = new VfioIrqs(fn);
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
        dmaBufs.cleanup("the last device file closed");
        irqs.releaseAll();
        irqs = null;
        notifyAll();
        if (!removed && !removing && fn.isPresent()) {
            fn.setMaster(false);
            if (fn.hasFlr()) {
                fn.resetFunction();
            }
        }
    }

    /** The interrupts while a file is open. */
    synchronized VfioIrqs irqs() {
        if (irqs == null) {
            throw new ErrnoException(Errno.ENODEV, name() + ": no device file is open");
        }
        return irqs;
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
     * {@code vfio_pci_remove} with {@code vfio_unregister_group_dev}'s wait: while device files are open the REQ
     * eventfd is signalled ({@code vfio_pci_core_request}) and the user gets {@link VfioCore#requestTimeout()} to
     * close them; where the kernel would wait on (and a real system hangs), the wait ends there, the files are
     * revoked (every later operation {@code ENODEV}), their interrupts freed, and the device leaves its group.
     *
     * @return whether every file was closed in time
     */
    boolean unregister() {
        boolean closedInTime;
        synchronized (this) {
            removing = true;
            if (!files.isEmpty() && irqs != null) {
                irqs.request();
            }
            long deadline = System.nanoTime() + core.requestTimeout().toNanos();
            long left;
            while (!files.isEmpty() && (left = deadline - System.nanoTime()) > 0) {
                try {
                    TimeUnit.NANOSECONDS.timedWait(this, left);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    LOG.warn("{}: interrupted while waiting for the user to close its device files", name(), e);
                    break;
                }
            }
            closedInTime = files.isEmpty();
            removed = true;
            if (irqs != null) {
                irqs.disable();
            }
        }
        if (!closedInTime) {
            LOG.warn("{}: {} device file(s) still open {} ms after the REQ interrupt: revoked", name(), files.size(),
                    core.requestTimeout().toMillis());
        }
        dmaBufs.cleanup("the device left vfio-pci");
        core.unregister(this);
        return closedInTime;
    }

    @Override
    public String toString() {
        return "vfio-pci " + name();
    }
}
