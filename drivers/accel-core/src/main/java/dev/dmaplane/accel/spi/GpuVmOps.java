package dev.dmaplane.accel.spi;

import org.osgi.annotation.versioning.ConsumerType;

import java.util.List;

/**
 * One GPU virtual address space's page tables as the driver writes them (the page-table side of
 * {@code drm_gpuvm_ops}: {@code sm_step_map}, {@code sm_step_unmap}, and {@code vm_free}). The core has checked
 * every range (page-aligned, inside the VM, not overlapping a live mapping) and serialises the calls of one VM.
 */
@ConsumerType
public interface GpuVmOps {
    /** Points {@code [va, va + total length of runs)} at {@code runs}, in order; replaces entries already there. */
    void map(long va, List<GpuRun> runs, boolean writable);

    /** Clears the entries of {@code [va, va + length)}; an access there is then a GPU page fault. */
    void unmap(long va, long length);

    /** Frees the page tables ({@code vm_free}); no call follows. */
    void destroy();
}
