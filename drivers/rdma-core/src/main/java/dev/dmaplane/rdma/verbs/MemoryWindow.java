package dev.dmaplane.rdma.verbs;

import org.osgi.annotation.versioning.ProviderType;

/**
 * A memory window ({@code ibv_alloc_mw}): remote access to part of a memory region under its own rkey, granted and
 * revoked without re-registering.
 */
@ProviderType
public interface MemoryWindow extends VerbsObject {
    MwType type();

    ProtectionDomain pd();

    /** The window's current rkey (it changes with each bind). */
    int rkey();

    /**
     * {@code ibv_bind_mw} (type 1 only): posts a bind work request on {@code qp} with the next key
     * ({@code ibv_inc_rkey}); the bind itself is checked when the HCA executes it, and a failure completes with
     * {@link WcStatus#MW_BIND_ERR}.
     *
     * @return the rkey the window has once the bind is done
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a type 2 window, zero-based access, or an
     *                                           address/length without a region; {@code EPERM} for a region of
     *                                           another PD; the post errors of {@link QueuePair#postSend}
     */
    int bind(QueuePair qp, MwBindInfo info, long wrId, int sendFlags);
}
