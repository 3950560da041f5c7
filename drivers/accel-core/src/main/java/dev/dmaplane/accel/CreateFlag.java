package dev.dmaplane.accel;

/** Flags of a buffer object's creation ({@code drm_amdgpu_gem_create_in.domain_flags}). */
public enum CreateFlag {
    /**
     * The object is private to its context's GPU VM ({@code AMDGPU_GEM_CREATE_VM_ALWAYS_VALID}): it shares the VM's
     * reservation in the kernel and can never be exported ({@code EPERM}).
     */
    VM_ALWAYS_VALID
}
