package dev.dmaplane.p2pdma.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.p2pdma.P2pAllocation;
import dev.dmaplane.p2pdma.P2pDistance;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.p2pdma.P2pMapping;
import dev.dmaplane.p2pdma.P2pMemory;
import dev.dmaplane.p2pdma.P2pPath;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciTopology;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;

import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The p2pdma core of one machine. In this model a BAR's bus address is also its CPU physical address (the host
 * bridge applies no offset), so a mapping through the host bridge maps the bus address with {@code mapResource}.
 */
public final class P2pDmaCore implements P2pDma {
    private final PciTopology pci;
    private final Tracer tracer;
    private final Map<PciFunction, ProviderMemory> providers = new ConcurrentHashMap<>();
    /** Live mappings, each with the DMA API that made it: an IOVA ({@code mapResource}) or a peer window ({@code mapPeer}). */
    private final Map<P2pMapping, DmaApi> mappings = new IdentityHashMap<>();

    public P2pDmaCore(Machine machine) {
        Objects.requireNonNull(machine, "machine");
        this.pci = machine.pci();
        this.tracer = machine.tracer();
    }

    @Override
    public P2pDistance distance(PciFunction provider, List<? extends Device> clients) {
        return distance(provider, clients, true);
    }

    @Override
    public P2pDistance distance(PciFunction provider, List<? extends Device> clients, boolean verbose) {
        requireOwn(provider);
        P2pDistance d = judge(provider, clients);
        if (!verbose) {
            return d;
        }
        for (P2pPath p : d.paths()) {
            trace(p);
        }
        if (d.paths().isEmpty()) {
            tracer.emit(TraceKind.P2PDMA, provider.name(), 0, 0, d.reason());
        }
        return d;
    }

    @Override
    public MapType mapType(PciFunction provider, Device client) {
        requireOwn(provider);
        P2pPath p = PathJudge.judge(provider, ErrnoException.requireNonNull(client, "client"));
        trace(p);
        return p.mapType();
    }

    @Override
    public P2pMemory addResource(PciFunction provider, int bar, long size, long offset) {
        requireOwn(provider);
        Bar b = provider.bar(bar).orElseThrow(() -> new ErrnoException(Errno.EINVAL, provider.bdf() + " has no BAR " + bar));
        if (!(b.backing() instanceof Bar.Memory)) {
            throw new ErrnoException(Errno.EINVAL, provider.bdf() + " BAR" + bar + " is a register block, not device memory");
        }
        if (offset < 0 || offset >= b.size()) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s BAR%d: offset %#x is outside the %#x-byte BAR",
                    provider.bdf(), bar, offset, b.size()));
        }
        long len = size == 0 ? b.size() - offset : size;
        if (size < 0 || len > b.size() - offset) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s BAR%d: size %#x from offset %#x does not fit the %#x-byte BAR",
                    provider.bdf(), bar, size, offset, b.size()));
        }
        if (offset % PagePool.PAGE != 0 || len % PagePool.PAGE != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s BAR%d: range %#x+%#x is not page-aligned",
                    provider.bdf(), bar, offset, len));
        }
        ProviderMemory mem = providers.computeIfAbsent(provider, p -> new ProviderMemory(p, tracer));
        mem.add(b, offset, len);
        return mem;
    }

    @Override
    public void releaseResources(PciFunction provider) {
        ErrnoException.requireNonNull(provider, "provider");
        ProviderMemory mem = providers.get(provider);
        if (mem == null) {
            throw new ErrnoException(Errno.EINVAL, provider.bdf() + " has no p2pmem to take back");
        }
        mem.release(() -> {
            providers.remove(provider, mem);
            tracer.emit(TraceKind.P2PDMA, provider.name(), 0, 0, "pci_p2pdma_release: the p2pmem pool is gone");
        });
    }

    @Override
    public Optional<P2pMemory> memory(PciFunction provider) {
        return Optional.ofNullable(providers.get(ErrnoException.requireNonNull(provider, "provider")));
    }

    @Override
    public Optional<P2pMemory> findMany(List<? extends Device> clients) {
        ErrnoException.requireNonNull(clients, "clients");
        ProviderMemory best = null;
        int bestDistance = Integer.MAX_VALUE;
        for (PciFunction f : pci.functions()) {
            ProviderMemory mem = providers.get(f);
            if (mem == null || !mem.published()) {
                continue;
            }
            int d = judge(f, clients).distance();
            if (d >= 0 && d < bestDistance) {
                best = mem;
                bestDistance = d;
            }
        }
        String who = clients.stream().map(Device::name).toList().toString();
        tracer.emit(TraceKind.P2PDMA, best == null ? null : best.provider().name(), 0, 0, best == null
                ? "find: no published p2pmem reaches all of " + who
                : "find: " + best.provider().bdf() + " is the closest published p2pmem to " + who + " (distance " + bestDistance + ")");
        return Optional.ofNullable(best);
    }

    @Override
    public P2pMapping mapSg(Device client, P2pAllocation allocation, DmaDirection direction) {
        ErrnoException.requireNonNull(client, "client");
        if (allocation == null) {
            throw new ErrnoException(Errno.EINVAL, client.name() + ": mapping a null p2pmem allocation");
        }
        if (direction == null || direction == DmaDirection.NONE) {
            throw new ErrnoException(Errno.EINVAL, client.name() + ": mapping p2pmem with direction " + direction);
        }
        ProviderMemory mem = providers.get(allocation.provider());
        if (mem == null) {
            throw new ErrnoException(Errno.EINVAL, allocation + " does not come from p2pmem of this machine");
        }
        if (!allocation.provider().isPresent() || !client.isPresent()) {
            throw new ErrnoException(Errno.ENODEV, (client.isPresent() ? allocation.provider().name() : client.name()) + " has left its bus");
        }
        P2pPath path = PathJudge.judge(allocation.provider(), client);
        trace(path);
        if (path.mapType() == MapType.NOT_SUPPORTED) {
            throw new ErrnoException(Errno.EREMOTEIO, path.reason());
        }
        synchronized (this) {
            mem.retain(allocation);
            long addr;
            DmaApi dma;
            try {
                if (path.mapType() == MapType.BUS_ADDR) {
                    // the requester the switch sees: the client itself, or the PCI function an auxiliary device sits on
                    dma = PathJudge.pciAncestor(client).orElseThrow().dma();
                    addr = dma.mapPeer(allocation.busAddress(), allocation.size(), direction);
                } else {
                    dma = client.dma();
                    addr = dma.mapResource(allocation.busAddress(), allocation.size(), direction);
                }
            } catch (RuntimeException e) {
                mem.release(allocation);
                throw e;
            }
            P2pMapping m = new P2pMapping(client, allocation, direction, path.mapType(), addr);
            mappings.put(m, dma);
            tracer.emit(TraceKind.P2PDMA, client.name(), addr, allocation.size(), "map " + path.mapType() + " " + direction
                    + " of " + allocation.provider().bdf() + String.format(" bus %#x", allocation.busAddress()));
            return m;
        }
    }

    @Override
    public synchronized void unmapSg(P2pMapping mapping) {
        if (mapping == null || !mappings.containsKey(mapping)) {
            throw new ErrnoException(Errno.EINVAL, "unmap of " + mapping + ", which is not a live p2pdma mapping (never made here, or already unmapped)");
        }
        Device client = mapping.client();
        DmaApi dma = mappings.get(mapping);
        // A requester that left its bus had its DMA mappings reclaimed when it went; only the bookkeeping is left.
        boolean requesterPresent = PathJudge.pciAncestor(client).map(Device::isPresent).orElse(false);
        if (requesterPresent) {
            if (mapping.mapType() == MapType.BUS_ADDR) {
                dma.unmapPeer(mapping.dmaAddress(), mapping.allocation().size(), mapping.direction());
            } else {
                dma.unmapResource(mapping.dmaAddress(), mapping.allocation().size(), mapping.direction());
            }
        }
        mappings.remove(mapping);
        providers.get(mapping.allocation().provider()).release(mapping.allocation());
        tracer.emit(TraceKind.P2PDMA, client.name(), mapping.dmaAddress(), mapping.allocation().size(), "unmap " + mapping.mapType());
    }

    private P2pDistance judge(PciFunction provider, List<? extends Device> clients) {
        ErrnoException.requireNonNull(clients, "clients");
        return P2pDistance.of(provider, clients.stream()
                .map(c -> PathJudge.judge(provider, ErrnoException.requireNonNull(c, "client"))).toList());
    }

    private void trace(P2pPath p) {
        tracer.emit(TraceKind.P2PDMA, p.client().name(), 0, 0, p.mapType() + " to " + p.provider().bdf() + ": " + p.reason());
    }

    private void requireOwn(PciFunction fn) {
        ErrnoException.requireNonNull(fn, "provider");
        if (pci.find(fn.bdf()).orElse(null) != fn) {
            throw new ErrnoException(Errno.ENODEV, fn.bdf() + " is not a function of this machine");
        }
    }
}
