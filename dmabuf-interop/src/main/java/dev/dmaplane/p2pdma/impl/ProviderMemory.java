package dev.dmaplane.p2pdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.p2pdma.P2pAllocation;
import dev.dmaplane.p2pdma.P2pMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * One provider's p2pmem ({@code struct pci_p2pdma}): its BAR ranges in a {@link PagePool}, the published flag, and
 * each live allocation with the number of client mappings that keep it from being freed.
 */
final class ProviderMemory implements P2pMemory {
    private final PciFunction provider;
    private final Tracer tracer;
    private final PagePool pool = new PagePool();
    private final List<Resource> resources = new ArrayList<>();
    /** Live allocations by bus address, with their count of client mappings. */
    private final Map<Long, Live> live = new HashMap<>();
    private volatile boolean published;
    /** Set by {@link #release}: no new allocation; the last free calls {@link #gone}. Guarded by this. */
    private boolean released;
    private Runnable gone;

    private static final class Live {
        final P2pAllocation allocation;
        int mappings;

        Live(P2pAllocation allocation) {
            this.allocation = allocation;
        }
    }

    ProviderMemory(PciFunction provider, Tracer tracer) {
        this.provider = provider;
        this.tracer = tracer;
    }

    @Override
    public PciFunction provider() {
        return provider;
    }

    @Override
    public synchronized List<Resource> resources() {
        return List.copyOf(resources);
    }

    @Override
    public synchronized long size() {
        return pool.totalBytes();
    }

    @Override
    public synchronized long available() {
        return pool.freeBytes();
    }

    @Override
    public boolean published() {
        return published;
    }

    @Override
    public synchronized void publish(boolean publish) {
        published = publish && !released;
        tracer.emit(TraceKind.P2PDMA, provider.name(), 0, size(), publish ? "p2pmem published" : "p2pmem unpublished");
    }

    /** Adds a validated BAR range; {@code EBUSY} if it overlaps one already added. */
    synchronized void add(Bar bar, long offset, long size) {
        if (pool.overlaps(bar, offset, size)) {
            throw new ErrnoException(Errno.EBUSY, String.format("%s: BAR%d range %#x+%#x overlaps p2pmem already added",
                    provider.bdf(), bar.index(), offset, size));
        }
        pool.add(bar, offset, size);
        resources.add(new Resource(bar.index(), offset, size, bar.address() + offset));
        tracer.emit(TraceKind.P2PDMA, provider.name(), bar.address() + offset, size, String.format(
                "added peer-to-peer DMA memory BAR%d %#x-%#x", bar.index(), bar.address() + offset, bar.address() + offset + size - 1));
    }

    @Override
    public synchronized P2pAllocation alloc(long size) {
        if (size <= 0) {
            throw new ErrnoException(Errno.EINVAL, provider.bdf() + ": p2pmem allocation of " + size + " bytes");
        }
        if (!provider.isPresent()) {
            throw new ErrnoException(Errno.ENODEV, provider.bdf() + " has left its bus; its p2pmem is gone");
        }
        if (released) {
            throw new ErrnoException(Errno.ENOMEM, provider.bdf() + ": pci_alloc_p2pmem of " + size
                    + " bytes: the p2pmem is being taken back (its driver unbound)");
        }
        PagePool.Placement at = PagePool.pagesFor(size) <= pool.freeBytes() / PagePool.PAGE ? pool.alloc(size) : null;
        if (at == null) {
            throw new ErrnoException(Errno.ENOMEM, String.format("%s: no free run of %d pages for %d bytes of p2pmem (%d of %d bytes free)",
                    provider.bdf(), PagePool.pagesFor(size), size, pool.freeBytes(), pool.totalBytes()));
        }
        P2pAllocation a = new P2pAllocation(provider, at.bar(), at.busAddress(), size);
        live.put(a.busAddress(), new Live(a));
        tracer.emit(TraceKind.P2PDMA, provider.name(), a.busAddress(), size, "p2pmem alloc");
        return a;
    }

    @Override
    public synchronized void free(P2pAllocation allocation) {
        Live l = lookup(allocation, "pci_free_p2pmem");
        if (l.mappings > 0) {
            throw new ErrnoException(Errno.EBUSY, allocation + " is still mapped for " + l.mappings + " client(s)");
        }
        pool.free(allocation.busAddress(), allocation.size());
        live.remove(allocation.busAddress());
        tracer.emit(TraceKind.P2PDMA, provider.name(), allocation.busAddress(), allocation.size(), "p2pmem free");
        if (released && live.isEmpty()) {
            gone.run();
        }
    }

    /**
     * Takes the memory back ({@code memunmap_pages} killing the page map's reference, then {@code pci_p2pdma_release}):
     * unpublished, no new allocation; {@code gone} runs once no allocation is out, now or at the last free.
     *
     * @throws ErrnoException {@code EINVAL} when already taken back
     */
    synchronized void release(Runnable gone) {
        if (released) {
            throw new ErrnoException(Errno.EINVAL, provider.bdf() + ": its p2pmem is already being taken back");
        }
        released = true;
        this.gone = gone;
        published = false;
        tracer.emit(TraceKind.P2PDMA, provider.name(), 0, size(), live.isEmpty() ? "p2pmem released"
                : "p2pmem unpublished, released when " + live.size() + " allocation(s) are freed");
        if (live.isEmpty()) {
            gone.run();
        }
    }

    /** Counts one more client mapping of a live allocation. */
    synchronized void retain(P2pAllocation allocation) {
        lookup(allocation, "mapping").mappings++;
    }

    /** Drops one client mapping of a live allocation. */
    synchronized void release(P2pAllocation allocation) {
        lookup(allocation, "unmapping").mappings--;
    }

    private Live lookup(P2pAllocation allocation, String what) {
        Live l = allocation == null ? null : live.get(allocation.busAddress());
        if (l == null || !l.allocation.equals(allocation)) {
            throw new ErrnoException(Errno.EINVAL, provider.bdf() + ": " + what + " of " + allocation
                    + ", which is not a live allocation of this p2pmem (never made here, or already freed)");
        }
        return l;
    }

    @Override
    public String toString() {
        return "P2pMemory[" + provider.bdf() + ", " + available() + "/" + size() + " bytes free" + (published ? ", published]" : "]");
    }
}
