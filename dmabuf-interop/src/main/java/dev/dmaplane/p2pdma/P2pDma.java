package dev.dmaplane.p2pdma;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.impl.P2pDmaCore;
import dev.dmaplane.pci.PciFunction;
import org.osgi.annotation.versioning.ProviderType;

import java.util.List;
import java.util.Optional;

/**
 * The p2pdma core of one machine ({@code drivers/pci/p2pdma.c}): judges provider–client pairs as the kernel does,
 * keeps each provider's p2pmem, finds the closest published provider for a set of clients, and maps provider
 * memory for a client. Every decision is traced as {@link dev.dmaplane.trace.TraceKind#P2PDMA}.
 * <p>
 * One instance per machine ({@link #of}, kept as the machine's {@link Machine#attachment}) holds the providers, so
 * p2pmem one driver publishes is found by every other; in OSGi the interop bundle offers it as a service of this
 * type.
 */
@ProviderType
public interface P2pDma {
    /**
     * The p2pdma core of {@code machine}, made on first use and kept by the machine itself.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENODEV} for a closed machine
     */
    static P2pDma of(Machine machine) {
        ErrnoException.requireNonNull(machine, "machine");
        return machine.attachment(P2pDma.class, P2pDmaCore::new);
    }

    /**
     * The p2pdma core of {@code machine}: the same instance as {@link #of}.
     *
     * @deprecated use {@link #of}; the name suggested a new registry per call, which hid published p2pmem
     */
    @Deprecated
    static P2pDma create(Machine machine) {
        return of(machine);
    }

    /**
     * How far {@code provider} is from {@code clients} and how they must address its memory
     * ({@code pci_p2pdma_distance_many} with verbose reasons, {@code calc_map_type_and_dist} per client). A client
     * that is not a PCI function is judged by its nearest PCI ancestor, as an auxiliary device by its parent.
     *
     * Each verdict is traced, as the kernel's {@code verbose} call warns; {@link #distance(PciFunction, List, boolean)}
     * with {@code verbose} false only asks.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENODEV} if the provider is not a function of this machine
     */
    P2pDistance distance(PciFunction provider, List<? extends Device> clients);

    /**
     * {@link #distance(PciFunction, List)} with the kernel's {@code verbose} argument of
     * {@code pci_p2pdma_distance_many}: traced as a decision when true; when false nothing is traced, for views that
     * only look (a picture of the machine's peer-to-peer paths must not fill the trace ring).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENODEV} if the provider is not a function of this machine
     */
    P2pDistance distance(PciFunction provider, List<? extends Device> clients, boolean verbose);

    /** The map type of one pair ({@code pci_p2pdma_map_type}). */
    MapType mapType(PciFunction provider, Device client);

    /**
     * Adds part of memory BAR {@code bar} of {@code provider} to its p2pmem ({@code pci_p2pdma_add_resource}):
     * {@code size} bytes (0 for the rest of the BAR) from {@code offset}, both page-aligned. Unpublished until
     * {@link P2pMemory#publish}.
     *
     * @return the provider's p2pmem, created on the first call
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} naming the bad BAR, offset or size (no such BAR, a
     *                                           register BAR, a range outside it or not page-aligned),
     *                                           {@code EBUSY} if the range overlaps one already added,
     *                                           {@code ENODEV} if the provider is not a function of this machine
     */
    P2pMemory addResource(PciFunction provider, int bar, long size, long offset);

    /**
     * Takes back all p2pmem of {@code provider}, as the devres actions {@code pci_p2pdma_add_resource} registered do
     * when its driver unbinds ({@code devm_memremap_pages}' release, then {@code pci_p2pdma_release}): at once the
     * memory is unpublished and allocates nothing more ({@code ENOMEM}); once every allocation was freed (at once
     * when none is out) the pool goes and {@link #memory} is empty. The kernel's unbind waits in
     * {@code memunmap_pages} for the allocations still out; here the last {@link P2pMemory#free} finishes the
     * teardown, so no caller blocks. Traced as a decision.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} if the provider has no p2pmem, or it is already being
     *                                           taken back
     */
    void releaseResources(PciFunction provider);

    /** The p2pmem of {@code provider}, if any was added ({@code pdev->p2pdma}). */
    Optional<P2pMemory> memory(PciFunction provider);

    /**
     * The published p2pmem closest to all of {@code clients} ({@code pci_p2pmem_find_many}): the smallest
     * {@link #distance}; where the kernel picks among equals at random, the first in bus enumeration order wins.
     */
    Optional<P2pMemory> findMany(List<? extends Device> clients);

    /**
     * Maps {@code allocation} for {@code client} (the P2P branch of {@code dma_map_sg}): its bus address when a
     * switch routes between them, tracked as a peer window ({@link dev.dmaplane.dma.DmaApi#mapPeer}: nothing is
     * mapped, but dma-debug catches a use after {@link #unmapSg}); an IOVA from
     * {@link dev.dmaplane.dma.DmaApi#mapResource} when the traffic crosses a host bridge that allows it.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EREMOTEIO} with the reason when the pair is
     *                                           {@link MapType#NOT_SUPPORTED} (as {@code dma_map_sgtable} returns),
     *                                           {@code EINVAL} for a bad direction or an allocation that is not
     *                                           live, {@code ENODEV} if provider or client left the bus
     */
    P2pMapping mapSg(Device client, P2pAllocation allocation, DmaDirection direction);

    /**
     * Undoes {@link #mapSg} ({@code dma_unmap_sg}); for a client that left its bus, whose IOVA the DMA layer already
     * reclaimed, only the bookkeeping is dropped.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} if {@code mapping} is not live (never made here, or
     *                                           already unmapped)
     */
    void unmapSg(P2pMapping mapping);
}
