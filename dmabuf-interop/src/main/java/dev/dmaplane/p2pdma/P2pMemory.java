package dev.dmaplane.p2pdma;

import dev.dmaplane.pci.PciFunction;
import org.osgi.annotation.versioning.ProviderType;

import java.util.List;

/**
 * The peer-to-peer memory of one provider ({@code struct pci_p2pdma} with its {@code gen_pool}): the BAR ranges
 * added with {@link P2pDma#addResource}, handed out page by page, and whether other drivers may find it.
 */
@ProviderType
public interface P2pMemory {
    /** One BAR range added to the pool ({@code pci_p2pdma_add_resource}). */
    record Resource(int bar, long barOffset, long size, long busAddress) {
    }

    /** The function whose BARs back this memory. */
    PciFunction provider();

    /** The ranges added, in order. */
    List<Resource> resources();

    /** Total bytes added ({@code p2pmem/size} in sysfs). */
    long size();

    /** Bytes not handed out ({@code p2pmem/available}). */
    long available();

    /** Whether other drivers may find this memory with {@link P2pDma#findMany} ({@code p2pmem/published}). */
    boolean published();

    /**
     * Publishes the memory for other drivers or takes it back ({@code pci_p2pmem_publish}); new memory is unpublished,
     * and memory being taken back ({@link P2pDma#releaseResources}) stays unpublished.
     */
    void publish(boolean publish);

    /**
     * Hands out {@code size} contiguous bytes, rounded up to whole pages, first fit ({@code pci_alloc_p2pmem}).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a size that is not positive, {@code ENOMEM} when no
     *                                           free range is large enough or the memory is being taken back
     *                                           ({@link P2pDma#releaseResources}), {@code ENODEV} once the provider
     *                                           left its bus
     */
    P2pAllocation alloc(long size);

    /**
     * Gives an allocation back ({@code pci_free_p2pmem}).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} if it is not a live allocation of this memory (never
     *                                           made here, or already freed), {@code EBUSY} while it is still mapped
     *                                           for a client
     */
    void free(P2pAllocation allocation);
}
