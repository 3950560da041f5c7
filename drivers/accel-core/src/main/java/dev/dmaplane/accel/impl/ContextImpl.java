package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.AccelDevice;
import dev.dmaplane.accel.AccelLimits;
import dev.dmaplane.accel.BoInfo;
import dev.dmaplane.accel.CreateFlag;
import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.Submission;
import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.accel.spi.EngineInfo;
import dev.dmaplane.accel.sync.SyncFile;
import dev.dmaplane.accel.sync.SyncObj;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.resource.UContext;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;

/**
 * One open context ({@code struct drm_file}) on a {@link UContext}: its GEM handles and their charges
 * ({@link GemHandles}), PRIME ({@link ContextPrime}), the GPU VM with VM_BIND ({@link VmBind}), the sync-object
 * handles ({@link SyncObjTable}) and the submission path ({@link Submitter}). Every call runs inside
 * {@link UContext#enter}, then under the device's {@link Ttm} lock where it touches placement; buffer objects and
 * their CPU access stay here, where that lock order (the UContext call, then the Ttm lock, then reservations) is
 * taken.
 */
final class ContextImpl implements AccelContext {
    private final DeviceImpl device;
    private final Ttm ttm;
    private final UContext uctx;
    private final VmImpl vm;
    private final VmBind binds;
    private final GemHandles handles;
    private final ContextPrime prime;
    private final SyncObjTable syncobjs;
    private final Submitter submitter;

    ContextImpl(DeviceImpl device, Ttm ttm, UContext uctx, AccelLimits limits) {
        this.device = device;
        this.ttm = ttm;
        this.uctx = uctx;
        this.handles = new GemHandles(device.name() + " ctx " + uctx.id(), limits);
        this.prime = new ContextPrime(this, device, ttm, uctx, handles);
        this.syncobjs = new SyncObjTable(device.name() + " ctx " + uctx.id());
        this.submitter = new Submitter(this, device, ttm, device.tracer());
        VmImpl created = new VmImpl(this, device.provider().createVm(device.name() + " ctx " + uctx.id()));
        this.binds = new VmBind(this, ttm, handles, created);
        this.vm = uctx.register(created);
    }

    @Override
    public AccelDevice device() {
        return device;
    }

    @Override
    public int id() {
        return uctx.id();
    }

    @Override
    public int createBo(long size) {
        return createBo(size, Placement.VRAM, EnumSet.of(Placement.VRAM, Placement.HOST));
    }

    @Override
    public int createBo(long size, Placement preferred, Set<Placement> allowed) {
        return createBo(size, preferred, allowed, Set.of());
    }

    @Override
    public int createBo(long size, Placement preferred, Set<Placement> allowed, Set<CreateFlag> flags) {
        ErrnoException.check(flags != null, Errno.EINVAL, "creation flags are null");
        ErrnoException.check(preferred != null && allowed != null && allowed.contains(preferred), Errno.EINVAL,
                "preferred placement " + preferred + " is not among the allowed " + allowed);
        ErrnoException.check(size > 0 && size <= Long.MAX_VALUE - (HostMemory.PAGE_SIZE - 1), Errno.EINVAL,
                "buffer object size " + size + " is 0 or overflows when rounded up to pages");
        long len = (size + HostMemory.PAGE_SIZE - 1) & -HostMemory.PAGE_SIZE;
        long usable = device.vram().totalSize() - device.vram().reservedSize();
        ErrnoException.check(len <= usable || allowed.contains(Placement.HOST), Errno.EINVAL,
                "buffer object size " + size + " exceeds all " + usable + " bytes of VRAM the driver did not reserve");
        try (UContext.Call ignored = uctx.enter()) {
            ttm.lock.lock();
            try {
                ttm.reap();
                handles.checkCharge(len);
                BoImpl bo = new BoImpl(this, handles.nextName(), len, preferred, allowed);
                bo.vmPrivate = flags.contains(CreateFlag.VM_ALWAYS_VALID);
                ttm.populate(bo);
                handles.charge(len);
                uctx.register(bo); // a refusal releases the object (ABORT): uncharged and freed
                handles.put(bo.handle(), bo);
                return bo.handle();
            } finally {
                ttm.lock.unlock();
            }
        }
    }

    @Override
    public void closeBo(int handle) {
        try (UContext.Call ignored = uctx.enter()) {
            if (!handles.contains(handle)) {
                throw new ErrnoException(Errno.EINVAL, "GEM_CLOSE of handle " + handle + ", which is not in " + device.name()
                        + " ctx " + id() + " (drm_gem_handle_delete)");
            }
            uctx.destroy(handle);
        }
    }

    /** The handle went (close, context close or disassociation): uncharged, its reference dropped. */
    void handleReleased(BoImpl bo) {
        ttm.lock.lock();
        try {
            handles.release(bo.handle(), bo);
            bo.handleOpen = false;
            unref(bo);
        } finally {
            ttm.lock.unlock();
        }
    }

    /** A second handle on another context's object went: uncharged, its reference dropped. */
    void sharedHandleReleased(SharedHandle h) {
        ttm.lock.lock();
        try {
            handles.release(h.handle(), h.bo);
            unref(h.bo);
        } finally {
            ttm.lock.unlock();
        }
    }

    @Override
    public DmaBuf primeExport(int handle) {
        try (UContext.Call ignored = uctx.enter()) {
            return prime.export(handle);
        }
    }

    @Override
    public int primeImport(DmaBuf dmabuf) {
        ErrnoException.check(dmabuf != null, Errno.EINVAL, "PRIME import of a null dma-buf");
        try (UContext.Call ignored = uctx.enter()) {
            return prime.importBuf(dmabuf);
        }
    }

    private void unref(BoImpl bo) {
        ttm.unref(bo);
    }

    BoImpl lookup(int handle) {
        return handles.lookup(handle);
    }

    @Override
    public BoInfo info(int handle) {
        try (UContext.Call ignored = uctx.enter()) {
            ttm.lock.lock();
            try {
                ttm.reap();
                BoImpl bo = lookup(handle);
                return new BoInfo(handle, bo.size, bo.backing.placement(), bo.size, bo.pins > 0, bo.mappings.size());
            } finally {
                ttm.lock.unlock();
            }
        }
    }

    @Override
    public Reservation reservation(int handle) {
        try (UContext.Call ignored = uctx.enter()) {
            return lookup(handle).resv;
        }
    }

    @Override
    public void read(int handle, long offset, MemorySegment dst) {
        cpuAccess(handle, offset, dst, false);
    }

    @Override
    public void write(int handle, long offset, MemorySegment src) {
        cpuAccess(handle, offset, src, true);
    }

    /**
     * {@code ttm_bo_vm_fault}: an object the CPU cannot reach is moved to the visible window (evicting there) or to
     * host memory ({@code amdgpu_bo_fault_reserve_notify}); the access waits for the object's kernel fences.
     */
    private void cpuAccess(int handle, long offset, MemorySegment data, boolean write) {
        try (UContext.Call ignored = uctx.enter()) {
            ttm.lock.lock();
            try {
                ttm.reap();
                BoImpl bo = lookup(handle);
                long len = data.byteSize();
                if (offset < 0 || offset > bo.size || len > bo.size - offset) {
                    throw new ErrnoException(Errno.EFAULT, String.format("%s: CPU access %#x+%#x outside its %#x bytes",
                            bo.name, offset, len, bo.size));
                }
                if (!bo.backing.cpuVisible() && !moveForCpu(bo)) {
                    throw new ErrnoException(bo.pins > 0 ? Errno.EBUSY : Errno.ENOMEM, bo.name + " is in VRAM the CPU cannot"
                            + " see and can move neither to the visible window nor to host memory" + (bo.pins > 0 ? ": pinned" : ""));
                }
                ttm.awaitIdle(bo, ResvUsage.KERNEL);
                ttm.reap();
                if (write) {
                    bo.backing.write(offset, data);
                } else {
                    bo.backing.read(offset, data);
                }
                ttm.touch(bo);
            } finally {
                ttm.lock.unlock();
            }
        }
    }

    private boolean moveForCpu(BoImpl bo) {
        boolean toWindow = bo.allowed.contains(Placement.VISIBLE_VRAM) || bo.allowed.contains(Placement.VRAM);
        return toWindow && ttm.moveTo(bo, Placement.VISIBLE_VRAM, true)
                || bo.allowed.contains(Placement.HOST) && ttm.moveTo(bo, Placement.HOST, false);
    }

    @Override
    public void pin(int handle) {
        try (UContext.Call ignored = uctx.enter()) {
            ttm.lock.lock();
            try {
                ttm.reap();
                BoImpl bo = lookup(handle);
                if (bo.pins == 0 && !ttm.moveTo(bo, bo.preferred, true)) {
                    throw new ErrnoException(Errno.ENOMEM, bo.name + ": no room to pin it in " + bo.preferred);
                }
                bo.pins++;
            } finally {
                ttm.lock.unlock();
            }
        }
    }

    @Override
    public void unpin(int handle) {
        try (UContext.Call ignored = uctx.enter()) {
            ttm.lock.lock();
            try {
                BoImpl bo = lookup(handle);
                ErrnoException.check(bo.pins > 0, Errno.EINVAL, bo.name + " is not pinned");
                bo.pins--;
            } finally {
                ttm.lock.unlock();
            }
        }
    }

    @Override
    public void validate(int handle) {
        try (UContext.Call ignored = uctx.enter()) {
            BoImpl bo = lookup(handle);
            boolean remapped = ContextPrime.remap(bo);
            // ttm_bo_validate runs with the object's reservation held (dma_resv_assert_held). An exported object's
            // is taken here, waiting for an importer that holds it (mapping after a move_notify), before the
            // placement lock, the order importers' maps take them in; under the placement lock an exported object's
            // reservation is only ever tried, so this cannot deadlock. Without it the move would only try the lock
            // and do nothing while an importer held it.
            boolean exported = bo.exported != null;
            if (exported) {
                bo.resv.lock();
            }
            try {
                ttm.lock.lock();
                try {
                    ttm.reap();
                    binds.validateLocked(bo, remapped);
                } finally {
                    ttm.lock.unlock();
                }
            } finally {
                if (exported) {
                    bo.resv.unlock();
                }
            }
        }
    }

    @Override
    public void vmBind(int handle, long boOffset, long va, long length, boolean writable) {
        try (UContext.Call ignored = uctx.enter()) {
            binds.bind(handle, boOffset, va, length, writable);
        }
    }

    @Override
    public void vmUnbind(long va, long length) {
        try (UContext.Call ignored = uctx.enter()) {
            binds.unbind(va, length);
        }
    }

    @Override
    public void vmValidate() {
        try (UContext.Call ignored = uctx.enter()) {
            Set<BoImpl> remapped = binds.remapInvalidatedImports();
            ttm.lock.lock();
            try {
                ttm.reap();
                binds.validateVmLocked(remapped);
            } finally {
                ttm.lock.unlock();
            }
        }
    }

    /**
     * The VM goes last ({@code drm_file_free}'s postclose): the context's queued jobs cancelled and its jobs on
     * the hardware awaited (bounded), the sync-object handles dropped, every mapping dropped (freeing closed
     * objects), then the page tables.
     */
    void vmReleased() {
        submitter.teardown();
        syncobjs.clear();
        try {
            binds.releaseAll();
        } finally {
            device.forget(this);
        }
    }

    @Override
    public Map<String, String> fdinfo() {
        try (UContext.Call ignored = uctx.enter()) {
            ttm.lock.lock();
            try {
                Map<String, String> out = new LinkedHashMap<>();
                out.put("drm-driver", device.driverName());
                out.put("drm-client-id", Integer.toString(id()));
                List<EngineInfo> engines = device.engines();
                for (int i = 0; i < engines.size(); i++) {
                    out.put("drm-engine-" + engines.get(i).name(), submitter.busyNanos(i) + " ns");
                }
                long vram = 0;
                long host = 0;
                long vramActive = 0;
                long hostActive = 0;
                for (BoImpl bo : handles.objects()) {
                    boolean active = !bo.resv.testSignaled(ResvUsage.BOOKKEEP);
                    if (bo.backing instanceof VramBacking) {
                        vram += bo.size;
                        vramActive += active ? bo.size : 0;
                    } else {
                        host += bo.size;
                        hostActive += active ? bo.size : 0;
                    }
                }
                out.put("drm-total-vram", vram / 1024 + " KiB");
                out.put("drm-resident-vram", vram / 1024 + " KiB");
                out.put("drm-total-system", host / 1024 + " KiB");
                out.put("drm-resident-system", host / 1024 + " KiB");
                out.put("drm-active-vram", vramActive / 1024 + " KiB");
                out.put("drm-active-system", hostActive / 1024 + " KiB");
                return out;
            } finally {
                ttm.lock.unlock();
            }
        }
    }

    @Override
    public List<BoInfo> objects() {
        try (UContext.Call ignored = uctx.enter()) {
            ttm.lock.lock();
            try {
                ttm.reap();
                List<BoImpl> all = new ArrayList<>(handles.objects());
                all.sort(Comparator.comparingInt(BoImpl::handle));
                return all.stream().map(bo -> new BoInfo(bo.handle(), bo.size, bo.backing.placement(), bo.size,
                        bo.pins > 0, bo.mappings.size())).toList();
            } finally {
                ttm.lock.unlock();
            }
        }
    }

    @Override
    public Fence submit(Submission submission) {
        try (UContext.Call ignored = uctx.enter()) {
            return submitter.submit(submission, syncobjs);
        }
    }

    @Override
    public void setPriority(SchedPriority priority) {
        call(() -> {
            submitter.setPriority(priority);
            return null;
        });
    }

    @Override
    public int syncObjCreate(int flags) {
        return call(() -> syncobjs.create(flags));
    }

    @Override
    public void syncObjDestroy(int handle) {
        call(() -> {
            syncobjs.destroy(handle);
            return null;
        });
    }

    @Override
    public int syncObjWait(int[] handles, long[] points, int flags, Duration timeout) {
        return call(() -> syncobjs.await(handles, points, flags, timeout));
    }

    @Override
    public void syncObjSignal(int handle, long point) {
        call(() -> {
            syncobjs.signal(handle, point);
            return null;
        });
    }

    @Override
    public void syncObjReset(int handle) {
        call(() -> {
            syncobjs.lookup(handle).reset();
            return null;
        });
    }

    @Override
    public long syncObjQuery(int handle, int flags) {
        return call(() -> syncobjs.lookup(handle).query(flags));
    }

    @Override
    public void syncObjTransfer(int src, long srcPoint, int dst, long dstPoint, int flags) {
        call(() -> {
            syncobjs.transfer(src, srcPoint, dst, dstPoint, flags);
            return null;
        });
    }

    @Override
    public SyncFile syncObjExportSyncFile(int handle, long point) {
        return call(() -> syncobjs.exportSyncFile(handle, point));
    }

    @Override
    public void syncObjImportSyncFile(int handle, long point, SyncFile file) {
        call(() -> {
            syncobjs.importSyncFile(handle, point, file);
            return null;
        });
    }

    @Override
    public SyncObj syncObjExport(int handle) {
        return call(() -> syncobjs.lookup(handle));
    }

    @Override
    public int syncObjImport(SyncObj obj) {
        return call(() -> syncobjs.install(obj));
    }

    /** Runs {@code body} inside {@link UContext#enter}. */
    private <T> T call(Supplier<T> body) {
        try (UContext.Call ignored = uctx.enter()) {
            return body.get();
        }
    }

    /** Objects the handle table holds (for listings). */
    int handleCount() {
        return handles.size();
    }

    /** Sync-object handles (for listings). */
    int syncObjCount() {
        return syncobjs.size();
    }

    /** Why the context is banned, or null. */
    String banned() {
        return submitter.banned();
    }

    SchedPriority priority() {
        return submitter.priority();
    }

    VmImpl vm() {
        return vm;
    }

    /** VM_BIND and validation of the context's GPU VM. */
    VmBind binds() {
        return binds;
    }

    @Override
    public void close() {
        uctx.close();
    }

    UContext uctx() {
        return uctx;
    }

    @Override
    public String toString() {
        return device.name() + " ctx " + id();
    }
}
