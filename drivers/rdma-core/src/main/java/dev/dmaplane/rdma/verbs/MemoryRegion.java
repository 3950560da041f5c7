package dev.dmaplane.rdma.verbs;

import dev.dmaplane.dmabuf.DmaBuf;
import org.osgi.annotation.versioning.ProviderType;

import java.util.Optional;

/**
 * A registered memory region ({@code struct ibv_mr}). Its keys are {@code index << 8 | key}: the index names the
 * region in the device's table, the 8-bit key changes whenever the region is registered again, so a stale key
 * never reaches new memory.
 */
@ProviderType
public interface MemoryRegion extends VerbsObject {
    ProtectionDomain pd();

    /** The registered virtual address. */
    long addr();

    /** Bytes registered. */
    long length();

    /** The address work requests use for the first byte. */
    long iova();

    int lkey();

    int rkey();

    /** The {@link Access} flags. */
    int access();

    /** The page size the HCA translates this region with ({@code ib_umem_find_best_pgsz}). */
    long pageSize();

    /** Whether the region is on-demand paged. */
    boolean isOnDemand();

    /**
     * The dma-buf behind a region of {@link ProtectionDomain#regDmabufMr} ({@code ib_umem_dmabuf}), empty for
     * regions of process memory. {@link #addr()} is then the offset into it.
     */
    Optional<DmaBuf> dmabuf();

    /**
     * {@code ibv_rereg_mr}: changes the translation ({@code addr}, {@code length}, IOVA = {@code addr}), the PD
     * and/or the access, as {@code flags} ({@link ReregFlags}) say; the keys keep their index and get a new 8-bit
     * key. On failure the region is unchanged.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for no or unknown flags, access flags without
     *                                           {@link ReregFlags#CHANGE_ACCESS}, bad new values, or windows
     *                                           bound to the region; {@code EOPNOTSUPP} for a new translation of
     *                                           a dma-buf region (its translation is the buffer's)
     */
    void rereg(int flags, ProtectionDomain pd, long addr, long length, int access);
}
