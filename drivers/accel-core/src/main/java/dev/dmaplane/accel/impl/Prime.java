package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.spi.VramInfo;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.ExportBacking;
import dev.dmaplane.dmabuf.heap.P2pExporter;
import dev.dmaplane.dmabuf.heap.VramExporter.Policy;
import dev.dmaplane.dmabuf.heap.VramExporter.Target;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.Bar;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Optional;

/**
 * PRIME of one device ({@code drm_prime.c} with {@code amdgpu_dma_buf.c}'s ops): an object is exported through a
 * {@link P2pExporter} with the object itself as the {@link ExportBacking} (its VRAM in the CPU- and peer-visible
 * window, or its host pages), so an importer p2pdma lets reach the BAR maps it peer-to-peer and any other one makes
 * it migrate to host memory by a TTM move through the provider. The export holds a reference on the object and is
 * remembered on it ({@code obj->dma_buf}) until the dma-buf is released.
 */
final class Prime {
    private final Ttm ttm;
    private final P2pExporter exporter;
    private final long barAddress;

    Prime(Machine machine, String device, VramInfo vram, Ttm ttm) {
        this.ttm = ttm;
        Bar bar = vram.function().bar(vram.bar()).orElseThrow(() -> new ErrnoException(Errno.EINVAL,
                vram.function().bdf() + " has no BAR " + vram.bar()));
        this.barAddress = bar.address();
        this.exporter = new P2pExporter(DmaBufs.of(machine), P2pDma.of(machine), vram.function(), Policy.MIGRATE_TO_HOST, device);
    }

    /**
     * {@code drm_gem_prime_export} (placement lock held): the object's live export with one more reference, or a new
     * one. An object in VRAM the window does not cover first moves into the window or to host memory.
     */
    DmaBuf export(BoImpl bo) {
        DmaBuf live = bo.exported;
        if (live != null) {
            try {
                live.get();
                return live;
            } catch (ErrnoException e) {
                if (e.errno() != Errno.EBADF) {
                    throw e;
                }
                // released, its release still waiting for fences: a new export follows
            }
        }
        if (!bo.backing.cpuVisible() && !ttm.moveTo(bo, Placement.VISIBLE_VRAM, true) && !ttm.moveTo(bo, Placement.HOST, false)) {
            throw new ErrnoException(Errno.ENOMEM, bo.name + " is in VRAM peers cannot reach and can move neither into the"
                    + " window nor to host memory");
        }
        BoExport backing = new BoExport(bo);
        DmaBuf buf = exporter.export(backing, bo.resv);
        backing.dmabuf = buf;
        bo.exported = buf;
        bo.refs++;
        return buf;
    }

    /** The object behind one of this device's exports, or empty for a foreign dma-buf. */
    Optional<BoImpl> object(DmaBuf buf) {
        return exporter.backing(buf).map(b -> ((BoExport) b).bo);
    }

    /** Eviction of an exported object (placement lock and its reservation lock held): a move with moveNotify. */
    Fence evict(BoImpl bo) {
        return exporter.migrate(bo.exported, Target.HOST, "evicted under VRAM pressure");
    }

    /**
     * {@code ttm_bo_validate} of an exported object (placement lock held): a move through the exporter, so importers
     * get {@code moveNotify}, under the object's reservation. The lock is only tried here, as TTM's LRU walk tries it
     * ({@code dma_resv_trylock}): a reservation held by another thread makes the validate try again later.
     *
     * @return whether the object moved to {@code p}
     */
    boolean move(BoImpl bo, Placement p) {
        boolean held = bo.resv.isHeldByCurrentThread();
        if (!held && !bo.resv.tryLock()) {
            return false;
        }
        try {
            exporter.migrate(bo.exported, p == Placement.HOST ? Target.HOST : Target.VRAM, "moved to " + p);
            return true;
        } catch (ErrnoException e) {
            if (e.errno() != Errno.ENOMEM && e.errno() != Errno.EBUSY) {
                throw e;
            }
            return false;
        } finally {
            if (!held) {
                bo.resv.unlock();
            }
        }
    }

    /** The device goes away: every export revoked, held mappings reported and torn down ({@link P2pExporter#stop}). */
    int stop(String reason) {
        return exporter.stop(reason);
    }

    /** A buffer object as an exporter's backing; every call under the device's placement lock. */
    private final class BoExport implements ExportBacking {
        final BoImpl bo;
        volatile DmaBuf dmabuf;

        BoExport(BoImpl bo) {
            this.bo = bo;
        }

        @Override
        public long size() {
            return bo.size;
        }

        @Override
        public Location location() {
            ttm.lock.lock();
            try {
                if (bo.freed) {
                    return null;
                }
                Backing b = bo.backing;
                if (b instanceof VramBacking v) {
                    ErrnoException.check(v.cpuVisible(), Errno.EFAULT, bo.name + ": " + v + " is beyond the peer-visible window");
                    return new InVram(barAddress + v.offset(), v.size(), b + " of " + bo.name);
                }
                return new InHost(((HostPages) b).pages(), b + " of " + bo.name);
            } finally {
                ttm.lock.unlock();
            }
        }

        @Override
        public PendingMove prepare(Target target) {
            ttm.lock.lock();
            try {
                ErrnoException.check(bo.pins == 0, Errno.EBUSY, bo.name + " is pinned " + bo.pins + " time(s) and cannot move");
                Placement p = target == Target.VRAM ? Placement.VISIBLE_VRAM : Placement.HOST;
                Backing to = ttm.allocateForMove(bo, p, target == Target.VRAM);
                if (to == null) {
                    throw new ErrnoException(Errno.ENOMEM, bo.name + ": no room in " + p + " for a move of " + bo.size + " bytes");
                }
                return new PendingMove() {
                    @Override
                    public String describe() {
                        return to.toString();
                    }

                    @Override
                    public Fence start(List<Fence> after, Runnable retire, String reason) {
                        ttm.lock.lock();
                        try {
                            return ttm.move(bo, to, "PRIME: " + reason, after, retire);
                        } finally {
                            ttm.lock.unlock();
                        }
                    }

                    @Override
                    public void cancel() {
                        to.free();
                    }
                };
            } finally {
                ttm.lock.unlock();
            }
        }

        @Override
        public void pin() {
            ttm.lock.lock();
            try {
                bo.pins++;
            } finally {
                ttm.lock.unlock();
            }
        }

        @Override
        public void unpin() {
            ttm.lock.lock();
            try {
                bo.pins--;
            } finally {
                ttm.lock.unlock();
            }
        }

        @Override
        public void read(long offset, MemorySegment dst) {
            ttm.lock.lock();
            try {
                bo.backing.read(offset, dst);
            } finally {
                ttm.lock.unlock();
            }
        }

        @Override
        public void write(long offset, MemorySegment src) {
            ttm.lock.lock();
            try {
                bo.backing.write(offset, src);
            } finally {
                ttm.lock.unlock();
            }
        }

        /** The dma-buf was released or revoked: the export's reference on the object goes. */
        @Override
        public void release() {
            ttm.lock.lock();
            try {
                if (bo.exported == dmabuf) {
                    bo.exported = null;
                }
                ttm.unref(bo);
            } finally {
                ttm.lock.unlock();
            }
        }
    }
}
