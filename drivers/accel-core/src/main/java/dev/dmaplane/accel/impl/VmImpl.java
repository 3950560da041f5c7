package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.spi.GpuVmOps;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UObject;

import java.util.LinkedHashSet;
import java.util.Set;
import java.util.TreeMap;

/**
 * A context's GPU virtual address space ({@code struct drm_gpuvm}): mappings by start address
 * ({@code drm_gpuva}s in the VA tree), the objects that moved since their page tables were written (the evict
 * list of {@code drm_gpuvm_bo_evict}, kept until they are back in their preferred placement), and the driver's page tables. Registered first in its context, so it goes
 * last: the mappings it drops are the final references of closed objects. Guarded by the device's {@link Ttm} lock.
 */
final class VmImpl extends UObject {
    /** The VA space's end ({@code mm_range}): 48 bits, as four-level GPU page tables reach. */
    static final long VA_END = 1L << 48;

    /** One mapping ({@code struct drm_gpuva}). */
    record Mapping(VmImpl vm, long va, long length, BoImpl bo, long boOffset, boolean writable) {
        long end() {
            return va + length;
        }
    }

    final ContextImpl context;
    final GpuVmOps ops;
    final TreeMap<Long, Mapping> mappings = new TreeMap<>();
    final Set<BoImpl> evicted = new LinkedHashSet<>();

    VmImpl(ContextImpl context, GpuVmOps ops) {
        super("vm");
        this.context = context;
        this.ops = ops;
    }

    /** {@code drm_gpuvm_put} of the last reference: every mapping unmapped, then the page tables freed. */
    @Override
    protected void release(RemoveReason reason) {
        context.vmReleased();
    }

    @Override
    public String describe() {
        return mappings.size() + " mapping(s)";
    }
}
