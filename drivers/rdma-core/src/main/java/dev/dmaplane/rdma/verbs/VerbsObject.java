package dev.dmaplane.rdma.verbs;

import org.osgi.annotation.versioning.ProviderType;

/**
 * An object a context holds by handle ({@code ib_uobject}). {@link #destroy()} is {@code ibv_destroy_*} /
 * {@code ibv_dereg_mr} / {@code ibv_dealloc_*}: refused with {@code EBUSY} while other objects use it (a PD with
 * MRs, a CQ with QPs), changing nothing.
 */
@ProviderType
public interface VerbsObject {
    /** The handle in its context. */
    int handle();

    /** The context holding it. */
    VerbsContext context();

    /** Whether it was destroyed (by the caller, by closing the context, or because the device went away). */
    boolean isDestroyed();

    /**
     * Destroys the object.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EBUSY} while in use, {@code EIO} after the device went away,
     *                                           {@code EINVAL} when already destroyed, or the object's own refusal
     */
    void destroy();
}
