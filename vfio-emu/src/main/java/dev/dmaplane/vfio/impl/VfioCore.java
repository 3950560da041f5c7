package dev.dmaplane.vfio.impl;

import dev.dmaplane.device.Driver;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.Vfio;
import dev.dmaplane.vfio.VfioUser;

import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;

/** The machine's VFIO ({@code struct vfio} of {@code vfio_main.c}): users, groups and the module parameters. */
public final class VfioCore implements Vfio, AutoCloseable {
    private final Machine machine;
    private final Object lock = new Object();
    private final Map<Integer, GroupState> groups = new HashMap<>();
    private final VfioPciDriver driver = new VfioPciDriver(this);
    private final List<UserImpl> users = new CopyOnWriteArrayList<>();
    private final AtomicLong pinnedPages = new AtomicLong();
    private volatile int dmaEntryLimit = DEFAULT_DMA_ENTRY_LIMIT;
    private volatile Duration requestTimeout = DEFAULT_REQUEST_TIMEOUT;

    public VfioCore(Machine machine) {
        this.machine = ErrnoException.requireNonNull(machine, "machine");
    }

    Machine machine() {
        return machine;
    }

    /** The machine's dma-buf registry, which vfio-pci exports BAR ranges into. */
    DmaBufs dmaBufs() {
        return DmaBufs.of(machine);
    }

    /** The machine's p2pdma core, which judges each importer of a BAR dma-buf. */
    P2pDma p2pDma() {
        return P2pDma.of(machine);
    }

    @Override
    public VfioUser open(AddressSpace mm, long memlockLimit) {
        ErrnoException.requireNonNull(mm, "address space");
        ErrnoException.check(!mm.isClosed(), Errno.EINVAL, "address space " + mm.name() + " is closed");
        ErrnoException.check(memlockLimit >= 0, Errno.EINVAL, "RLIMIT_MEMLOCK " + memlockLimit + " is negative");
        UserImpl u = new UserImpl(this, mm, memlockLimit);
        users.add(u);
        return u;
    }

    void userClosed(UserImpl u) {
        users.remove(u);
    }

    @Override
    public int dmaEntryLimit() {
        return dmaEntryLimit;
    }

    @Override
    public void setDmaEntryLimit(int limit) {
        ErrnoException.check(limit >= 0, Errno.EINVAL, "dma_entry_limit " + limit + " is negative");
        dmaEntryLimit = limit;
    }

    @Override
    public Duration requestTimeout() {
        return requestTimeout;
    }

    @Override
    public void setRequestTimeout(Duration timeout) {
        ErrnoException.requireNonNull(timeout, "request timeout");
        ErrnoException.check(!timeout.isNegative(), Errno.EINVAL, "request timeout " + timeout + " is negative");
        requestTimeout = timeout;
    }

    @Override
    public long pinnedPages() {
        return pinnedPages.get();
    }

    /** Counts pages containers pinned (positive) or unpinned (negative). */
    void pinned(long pages) {
        pinnedPages.addAndGet(pages);
    }

    /** The lock of group membership and containers ({@code group->group_lock} with {@code container->group_lock}). */
    Object lock() {
        return lock;
    }

    @Override
    public Driver driver() {
        return driver;
    }

    /** {@code vfio_register_group_dev}: {@code fn} joins the VFIO group of its IOMMU group, made on first use. */
    VfioPciDevice register(PciFunction fn) {
        IommuGroup ig = machine.iommu().groupOf(fn).orElseThrow(() -> new ErrnoException(Errno.EINVAL,
                "vfio-pci: " + fn.name() + " has no IOMMU group (no-IOMMU mode is not offered)"));
        synchronized (lock) {
            GroupState g = groups.computeIfAbsent(ig.id(), id -> new GroupState(ig));
            VfioPciDevice d = new VfioPciDevice(this, fn, g);
            g.add(d);
            return d;
        }
    }

    /** The vfio-pci device of {@code fn}, if {@code fn} is bound to vfio-pci. */
    Optional<VfioPciDevice> device(PciFunction fn) {
        synchronized (lock) {
            for (GroupState g : groups.values()) {
                for (VfioPciDevice d : g.devices()) {
                    if (d.function() == fn) {
                        return Optional.of(d);
                    }
                }
            }
        }
        return Optional.empty();
    }

    /** {@code vfio_unregister_group_dev}: the group goes with its last device unless a file still holds it. */
    void unregister(VfioPciDevice d) {
        synchronized (lock) {
            GroupState g = d.group();
            g.remove(d);
            if (g.isEmpty()) {
                // vfio_device_remove_group: with the last device the group leaves its container, so the IOMMU
                // group goes back to the DMA API; a file still open answers ENODEV
                ContainerFile c = g.container();
                if (c != null) {
                    g.setContainer(null);
                    c.detachGroup(g);
                }
                if (!g.isOpen()) {
                    groups.remove(g.id(), g);
                }
            }
        }
    }

    /** {@code open("/dev/vfio/N")}: {@code ENOENT} without a device of group N on vfio-pci, {@code EBUSY} if open. */
    VfioFile openGroup(UserImpl user, int group) {
        synchronized (lock) {
            GroupState g = groups.get(group);
            if (g == null || g.isEmpty()) {
                throw new ErrnoException(Errno.ENOENT, "/dev/vfio/" + group
                        + ": no device of IOMMU group " + group + " is bound to vfio-pci");
            }
            GroupFile f = new GroupFile(user, g);
            g.open(f);
            return f;
        }
    }

    /**
     * {@code open("/dev/vfio/devices/vfioX")} ({@code vfio_device_fops_cdev_open}): {@code ENOENT} for a device not
     * bound to vfio-pci.
     */
    VfioFile openCdev(UserImpl user, String device) {
        synchronized (lock) {
            for (GroupState g : groups.values()) {
                VfioPciDevice d = g.device(device).orElse(null);
                if (d != null) {
                    return new CdevFile(user, d);
                }
            }
        }
        throw new ErrnoException(Errno.ENOENT, "/dev/vfio/devices: no device " + device + " is bound to vfio-pci");
    }

    /** The last reference to a group's file went: a group without devices is forgotten. */
    void groupReleased(GroupState g) {
        if (g.isEmpty()) {
            groups.remove(g.id(), g);
        }
    }

    /** The machine closes: every user's descriptors are closed, so nothing stays pinned or owned. */
    @Override
    public void close() {
        for (UserImpl u : users) {
            u.close();
        }
    }
}
