package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.Placement;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.resource.UContext;

import java.util.EnumSet;
import java.util.Optional;

/**
 * PRIME for one context ({@code drm_prime.c} with the context's {@code drm_prime_file_private}): export of its
 * objects, import of this device's own dma-bufs as a second handle on the same object and of foreign ones as
 * dynamic importers whose {@code move_notify} unmaps them from the GPU VMs until they are mapped again. Callers are
 * inside the context's {@link UContext#enter}; the device's Ttm lock is taken here where handles change.
 */
final class ContextPrime {
    private final ContextImpl context;
    private final DeviceImpl device;
    private final Ttm ttm;
    private final UContext uctx;
    private final GemHandles handles;

    ContextPrime(ContextImpl context, DeviceImpl device, Ttm ttm, UContext uctx, GemHandles handles) {
        this.context = context;
        this.device = device;
        this.ttm = ttm;
        this.uctx = uctx;
        this.handles = handles;
    }

    /** {@code drm_gem_prime_handle_to_fd}: EPERM for an object private to the context's VM. */
    DmaBuf export(int handle) {
        ttm.lock.lock();
        try {
            ttm.reap();
            BoImpl bo = handles.lookup(handle);
            ErrnoException.check(!bo.vmPrivate, Errno.EPERM, bo.name + " was created VM_ALWAYS_VALID, private to "
                    + context + "'s VM, and cannot be exported");
            return device.prime().export(bo);
        } finally {
            ttm.lock.unlock();
        }
    }

    /** {@code drm_gem_prime_fd_to_handle}: the handle an import of {@code dmabuf} already has here, or a new one. */
    int importBuf(DmaBuf dmabuf) {
        ErrnoException.check(!dmabuf.isReleased(), Errno.EBADF, "PRIME import of dma-buf " + dmabuf.ino() + ", which was closed");
        ErrnoException.check(!dmabuf.isRevoked(), Errno.ENODEV, "PRIME import of dma-buf " + dmabuf.ino() + ", which "
                + dmabuf.exporterName() + " revoked");
        Optional<BoImpl> own = device.prime().object(dmabuf);
        if (own.isPresent()) {
            return importOwn(own.get());
        }
        ttm.lock.lock();
        try {
            Integer known = handles.importing(dmabuf);
            if (known != null) {
                return known;
            }
            handles.checkCharge(dmabuf.size());
        } finally {
            ttm.lock.unlock();
        }
        return importForeign(dmabuf);
    }

    /** This device's own export: the same object, its handle here if it has one, else a second handle on it. */
    private int importOwn(BoImpl bo) {
        ttm.lock.lock();
        try {
            Integer known = handles.handleOf(bo);
            if (known != null) {
                return known;
            }
            ErrnoException.check(!bo.freed, Errno.EBADF, bo.name + " was freed");
            handles.checkCharge(bo.size);
            SharedHandle h = new SharedHandle(context, bo);
            handles.charge(bo.size);
            bo.refs++;
            uctx.register(h); // a refusal releases the handle (ABORT): uncharged, its reference dropped
            handles.put(h.handle(), bo);
            return h.handle();
        } finally {
            ttm.lock.unlock();
        }
    }

    /**
     * A foreign dma-buf: attached and mapped without the placement lock (the attach and map take the exporter's
     * reservation lock, which an exporter's move holds while it tells this importer), then made an object.
     */
    private int importForeign(DmaBuf dmabuf) {
        BoImpl[] holder = new BoImpl[1];
        ImportedPages pages = ImportedPages.attach(dmabuf, device.provider().dmaDevice(), a -> invalidated(holder[0]),
                ttm.timeout());
        ttm.lock.lock();
        try {
            handles.checkCharge(dmabuf.size());
            BoImpl bo = new BoImpl(context, handles.nextName() + " (dma-buf " + dmabuf.ino() + ")", dmabuf.size(),
                    Placement.HOST, EnumSet.of(Placement.HOST), dmabuf.resv());
            bo.backing = pages;
            holder[0] = bo;
            handles.charge(bo.size);
            uctx.register(bo); // a refusal releases the object (ABORT): uncharged, detached
            handles.put(bo.handle(), bo);
            return bo.handle();
        } catch (RuntimeException e) {
            if (holder[0] == null) {
                pages.free();
            }
            throw e;
        } finally {
            ttm.lock.unlock();
        }
    }

    /**
     * {@code amdgpu_dma_buf_move_notify}: the exporter moves the imported buffer (its reservation lock held), so every
     * GPU VM range bound to it is unmapped now and mapped again on the next validate. The placement lock is only
     * tried, as amdgpu only tries the VM's reservation there: a thread holding it may be waiting for the exporter's
     * reservation (freeing an import), and the object is marked invalidated either way, so the next validate remaps it
     * and until then the retired mapping cuts the GPU off the old place.
     */
    private void invalidated(BoImpl bo) {
        if (bo == null) {
            return;
        }
        ((ImportedPages) bo.backing).invalidate();
        if (!ttm.lock.tryLock()) {
            return;
        }
        try {
            for (VmImpl.Mapping m : bo.mappings) {
                m.vm().ops.unmap(m.va(), m.length());
                m.vm().evicted.add(bo);
            }
        } finally {
            ttm.lock.unlock();
        }
    }

    /**
     * Maps an invalidated import again, without the placement lock (the map takes the exporter's reservation);
     * returns whether it did, so its VM mappings are rewritten.
     */
    static boolean remap(BoImpl bo) {
        if (bo.backing instanceof ImportedPages ip && ip.isInvalidated()) {
            ip.remap();
            return true;
        }
        return false;
    }
}
