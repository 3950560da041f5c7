package dev.dmaplane.accel.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;

import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * VM_BIND on one context's GPU VM ({@code drm_gpuvm.c}): mappings of buffer objects at GPU virtual addresses
 * entered and removed ({@code drm_gpuvm_sm_map}, {@code drm_gpuvm_sm_unmap}), the page tables of moved objects
 * rewritten ({@code drm_gpuvm_validate}), and every mapping dropped when the VM goes. Callers are inside the
 * context's {@code UContext} call; the device's {@link Ttm} lock is taken here or held by the caller, as each method
 * says.
 */
final class VmBind {
    private final ContextImpl context;
    private final Ttm ttm;
    private final GemHandles handles;
    private final VmImpl vm;

    VmBind(ContextImpl context, Ttm ttm, GemHandles handles, VmImpl vm) {
        this.context = context;
        this.ttm = ttm;
        this.handles = handles;
        this.vm = vm;
    }

    /** Maps {@code length} bytes of object {@code handle} from {@code boOffset} at {@code va}; takes the Ttm lock. */
    void bind(int handle, long boOffset, long va, long length, boolean writable) {
        ttm.lock.lock();
        try {
            BoImpl bo = handles.lookup(handle);
            checkRange(va, length);
            if (boOffset < 0 || boOffset % HostMemory.PAGE_SIZE != 0 || boOffset > bo.size || length > bo.size - boOffset) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: range %#x+%#x is not page-aligned inside its %#x bytes",
                        bo.name, boOffset, length, bo.size));
            }
            Map.Entry<Long, VmImpl.Mapping> before = vm.mappings.floorEntry(va + length - 1);
            if (before != null && before.getValue().end() > va) {
                throw new ErrnoException(Errno.EEXIST, String.format("%s: VA %#x+%#x overlaps the mapping at %#x+%#x",
                        context, va, length, before.getKey(), before.getValue().length()));
            }
            VmImpl.Mapping m = new VmImpl.Mapping(vm, va, length, bo, boOffset, writable);
            vm.ops.map(va, Backing.slice(bo.backing.runs(), boOffset, length), writable);
            vm.mappings.put(va, m);
            bo.mappings.add(m);
            bo.refs++;
        } finally {
            ttm.lock.unlock();
        }
    }

    /** Removes the mapping that starts at {@code va} and is {@code length} bytes long; takes the Ttm lock. */
    void unbind(long va, long length) {
        ttm.lock.lock();
        try {
            checkRange(va, length);
            VmImpl.Mapping m = vm.mappings.get(va);
            if (m == null || m.length() != length) {
                throw new ErrnoException(Errno.ENOENT, String.format("%s: no mapping at %#x+%#x", context, va, length));
            }
            unmap(m);
        } finally {
            ttm.lock.unlock();
        }
    }

    private void unmap(VmImpl.Mapping m) {
        vm.ops.unmap(m.va(), m.length());
        vm.mappings.remove(m.va());
        m.bo().mappings.remove(m);
        if (m.bo().mappings.stream().noneMatch(x -> x.vm() == vm)) {
            vm.evicted.remove(m.bo());
        }
        ttm.unref(m.bo());
    }

    private static void checkRange(long va, long length) {
        if (va < 0 || length <= 0 || va % HostMemory.PAGE_SIZE != 0 || length % HostMemory.PAGE_SIZE != 0
                || va > VmImpl.VA_END || length > VmImpl.VA_END - va) {
            throw new ErrnoException(Errno.EINVAL, String.format("VA range %#x+%#x is not page-aligned, non-empty and below %#x",
                    va, length, VmImpl.VA_END));
        }
    }

    /**
     * {@code ttm_bo_validate} into the preferred placement, then the VM mappings that no longer match rewritten
     * (all of them with {@code force}); Ttm lock held.
     */
    void validateLocked(BoImpl bo, boolean force) {
        ttm.moveTo(bo, bo.preferred, true);
        ttm.touch(bo);
        remap(bo, force);
    }

    /**
     * Maps again, outside the device lock (the exporter's locks come first), every foreign import of the VM whose
     * exporter moved it ({@code move_notify}); returns them with the VM's evicted objects, for {@link #validateVmLocked}.
     */
    Set<BoImpl> remapInvalidatedImports() {
        Set<BoImpl> evicted = new LinkedHashSet<>();
        ttm.lock.lock();
        try {
            evicted.addAll(vm.evicted);
            for (VmImpl.Mapping m : vm.mappings.values()) {
                if (m.bo().backing instanceof ImportedPages ip && ip.isInvalidated()) {
                    evicted.add(m.bo());
                }
            }
        } finally {
            ttm.lock.unlock();
        }
        evicted.forEach(ContextPrime::remap);
        return evicted;
    }

    /**
     * {@code drm_gpuvm_validate}, device lock held: every evicted object of the VM, and {@code remapped} (from
     * {@link #remapInvalidatedImports}), moved home if it can be, its mappings rewritten.
     */
    void validateVmLocked(Set<BoImpl> remapped) {
        Set<BoImpl> evicted = new LinkedHashSet<>(remapped);
        evicted.addAll(vm.evicted);
        for (BoImpl bo : evicted) {
            if (bo.freed) {
                continue;
            }
            ttm.moveTo(bo, bo.preferred, true);
            remap(bo, true);
        }
    }

    /**
     * Rewrites the page tables of the mappings of {@code bo} in the VMs it is evicted from, or of all of them with
     * {@code force} (an import whose pages were mapped again) ({@code drm_gpuvm_validate}'s rebind); the object
     * stays on the evict list while it is not in its preferred placement, so a later validate tries again.
     */
    private static void remap(BoImpl bo, boolean force) {
        boolean home = Ttm.in(bo.backing, bo.preferred);
        Set<VmImpl> rewritten = new HashSet<>();
        for (VmImpl.Mapping m : bo.mappings) {
            // a VM whose evict list lacks the object still maps its backing: drm_gpuvm_validate skips it
            if (force || m.vm().evicted.contains(bo)) {
                m.vm().ops.map(m.va(), Backing.slice(bo.backing.runs(), m.boOffset(), m.length()), m.writable());
                rewritten.add(m.vm());
            }
        }
        if (home) {
            rewritten.forEach(vm -> vm.evicted.remove(bo));
        }
    }

    /** Every mapping dropped (freeing closed objects), then the page tables; takes the Ttm lock. */
    void releaseAll() {
        ttm.lock.lock();
        try {
            for (VmImpl.Mapping m : List.copyOf(vm.mappings.values())) {
                unmap(m);
            }
            vm.ops.destroy();
        } finally {
            ttm.lock.unlock();
        }
    }
}
