package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.vfio.Vfio;
import dev.dmaplane.vfio.VfioUser;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;

/** The machine's VFIO ({@code struct vfio} of {@code vfio_main.c}): users, groups and the module parameters. */
public final class VfioCore implements Vfio, AutoCloseable {
    private final Machine machine;
    private final List<UserImpl> users = new CopyOnWriteArrayList<>();
    private final AtomicLong pinnedPages = new AtomicLong();
    private volatile int dmaEntryLimit = DEFAULT_DMA_ENTRY_LIMIT;

    public VfioCore(Machine machine) {
        this.machine = ErrnoException.requireNonNull(machine, "machine");
    }

    Machine machine() {
        return machine;
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
    public long pinnedPages() {
        return pinnedPages.get();
    }

    /** Counts pages containers pinned (positive) or unpinned (negative). */
    void pinned(long pages) {
        pinnedPages.addAndGet(pages);
    }

    /** {@code open("/dev/vfio/N")}. */
    VfioFile openGroup(UserImpl user, int group) {
        throw new ErrnoException(Errno.ENOENT, "/dev/vfio/" + group + ": no device of the group is bound to vfio-pci");
    }

    /** The machine closes: every user's descriptors are closed, so nothing stays pinned or owned. */
    @Override
    public void close() {
        for (UserImpl u : users) {
            u.close();
        }
    }
}
