package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.Placement;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UObject;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * A buffer object ({@code struct ttm_buffer_object} in a {@code drm_gem_object}): its size, placements, backing
 * and reservation, the GPU VM mappings on it, and its references (the handle and one per mapping, as
 * {@code drm_gem_object}'s refcount). Fields other than the finals are guarded by the device's {@link Ttm} lock.
 */
final class BoImpl extends UObject {
    final ContextImpl context;
    final String name;
    final long size;
    final Placement preferred;
    final Set<Placement> allowed;
    final Reservation resv;
    final List<VmImpl.Mapping> mappings = new ArrayList<>();
    Backing backing;
    int pins;
    int refs = 1;
    boolean handleOpen = true;
    boolean freed;
    /** Created private to its context's VM ({@code AMDGPU_GEM_CREATE_VM_ALWAYS_VALID}): never exported. */
    boolean vmPrivate;
    /** Its PRIME export while one lives ({@code obj->dma_buf}); it holds a reference on the object. */
    DmaBuf exported;

    BoImpl(ContextImpl context, String name, long size, Placement preferred, Set<Placement> allowed) {
        this(context, name, size, preferred, allowed, new Reservation(name));
    }

    /** An object sharing {@code resv}: an imported dma-buf's, as {@code drm_gem_prime_import_dev} shares it. */
    BoImpl(ContextImpl context, String name, long size, Placement preferred, Set<Placement> allowed, Reservation resv) {
        super("bo");
        this.context = context;
        this.name = name;
        this.size = size;
        this.preferred = preferred;
        this.allowed = Set.copyOf(allowed);
        this.resv = resv;
    }

    /** The GEM handle goes ({@code drm_gem_handle_delete}); the object lives on while a mapping holds it. */
    @Override
    protected void release(RemoveReason reason) {
        context.handleReleased(this);
    }

    @Override
    public String describe() {
        Backing b = backing;
        return size + " bytes " + (b == null ? "unplaced" : b) + (pins > 0 ? " pinned" : "");
    }

    @Override
    public String toString() {
        return name;
    }
}
