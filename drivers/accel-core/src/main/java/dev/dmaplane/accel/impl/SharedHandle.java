package dev.dmaplane.accel.impl;

import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UObject;

/**
 * A second GEM handle on an object of another context of the same device, made by importing its PRIME export
 * ({@code drm_gem_handle_create} in {@code drm_gem_prime_fd_to_handle}); it holds one reference on the object.
 */
final class SharedHandle extends UObject {
    final ContextImpl context;
    final BoImpl bo;

    SharedHandle(ContextImpl context, BoImpl bo) {
        super("bo");
        this.context = context;
        this.bo = bo;
    }

    @Override
    protected void release(RemoveReason reason) {
        context.sharedHandleReleased(this);
    }

    @Override
    public String describe() {
        return "handle on " + bo.name;
    }
}
