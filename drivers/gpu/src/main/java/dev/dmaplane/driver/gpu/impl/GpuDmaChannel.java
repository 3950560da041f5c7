package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.sched.SchedEntity;
import dev.dmaplane.accel.sched.SchedJob;
import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.accel.sched.Scheduler;
import dev.dmaplane.dmaengine.DmaChannel;
import dev.dmaplane.dmaengine.DmaResult;
import dev.dmaplane.dmaengine.DmaStatus;
import dev.dmaplane.dmaengine.DmaTransactionType;
import dev.dmaplane.dmaengine.DmaTxDescriptor;
import dev.dmaplane.dmaengine.DmaTxResult;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListSet;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * A dmaengine channel on a GPU copy engine, in the kernel VM with SYSTEM-aperture addresses (what a DMA controller
 * driver such as {@code drivers/dma/ioat/dma.c} offers, through {@code virt-dma.c}'s submitted/issued lists): each
 * transaction is one job on the channel's own scheduler entity, pushed by {@link #issuePending()}; its result comes
 * from the job's finished fence and, on a fault, from the engine's fault registers (an IOMMU refusal or page fault
 * on the source is {@code READ_FAILED}, on the destination {@code WRITE_FAILED}).
 */
final class GpuDmaChannel implements DmaChannel {
    private static final Logger LOG = LoggerFactory.getLogger(GpuDmaChannel.class);
    /** The largest transaction ({@code dma_get_max_seg_size} of the channel). */
    static final long MAX_LENGTH = 64L << 20;

    private final String name;
    private final Scheduler scheduler;
    private final Duration syncTimeout;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition ended = lock.newCondition();
    private final List<Tx> submitted = new ArrayList<>();
    private final ConcurrentHashMap<Long, Tx> active = new ConcurrentHashMap<>();
    /** Cookies issued and not ended: what {@link #synchronize()} waits for. */
    private final Set<Long> issued = ConcurrentHashMap.newKeySet();
    private final Set<Long> failed = new ConcurrentSkipListSet<>();
    private SchedEntity entity;
    private long lastCookie;
    private boolean gone;

    GpuDmaChannel(String name, Scheduler scheduler, Duration syncTimeout) {
        this.name = name;
        this.scheduler = scheduler;
        this.syncTimeout = syncTimeout;
        this.entity = SchedEntity.create(scheduler, SchedPriority.NORMAL);
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public Set<DmaTransactionType> capabilities() {
        return EnumSet.of(DmaTransactionType.MEMCPY, DmaTransactionType.MEMSET);
    }

    @Override
    public DmaTxDescriptor prepMemcpy(long dst, long src, long len, int flags) {
        check("prep_dma_memcpy", len, flags);
        return new Tx(new GpuCommand.Copy(0, src | APERTURE_SYSTEM, dst | APERTURE_SYSTEM, len), src, dst, len, flags);
    }

    @Override
    public DmaTxDescriptor prepMemset(long dst, int value, long len, int flags) {
        check("prep_dma_memset", len, flags);
        int b = value & 0xFF;
        return new Tx(new GpuCommand.Fill(0, dst | APERTURE_SYSTEM, len, b * 0x0101_0101), -1, dst, len, flags);
    }

    private void check(String op, long len, int flags) {
        ErrnoException.check(len > 0 && len <= MAX_LENGTH, Errno.EINVAL, name + ": " + op + " length " + len
                + " outside 1.." + MAX_LENGTH);
        ErrnoException.check((flags & ~(PREP_INTERRUPT | CTRL_ACK)) == 0, Errno.EINVAL, String.format(
                "%s: %s flags %#x has unknown bits", name, op, flags));
        lock.lock();
        try {
            ErrnoException.check(!gone, Errno.ENODEV, name + ": " + op + " on a channel whose device is gone");
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void issuePending() {
        List<Tx> issue;
        SchedEntity e;
        lock.lock();
        try {
            issue = List.copyOf(submitted);
            submitted.clear();
            issue.forEach(tx -> issued.add(tx.cookie));
            e = entity;
        } finally {
            lock.unlock();
        }
        for (Tx tx : issue) {
            try {
                SchedJob job = SchedJob.init(e, 1, new GpuJob(List.of(tx.command), tx::fault));
                job.arm();
                job.push();
                if (!job.finished().addCallback(tx::ended)) {
                    tx.ended(job.finished()); // it ended before the callback could be added
                }
            } catch (ErrnoException ex) {
                LOG.debug("{}: cookie {} not issued: {}", name, tx.cookie, ex.getMessage(), ex);
                tx.end(DmaResult.ABORTED);
            }
        }
    }

    @Override
    public DmaStatus txStatus(long cookie) {
        lock.lock();
        try {
            ErrnoException.check(cookie > 0 && cookie <= lastCookie, Errno.EINVAL, name + ": cookie " + cookie
                    + " was never returned (last " + lastCookie + ")");
        } finally {
            lock.unlock();
        }
        if (active.containsKey(cookie)) {
            return DmaStatus.IN_PROGRESS;
        }
        return failed.contains(cookie) ? DmaStatus.ERROR : DmaStatus.COMPLETE;
    }

    /**
     * {@code device_terminate_all}: transactions submitted and not issued end ABORTED at once; the entity is killed,
     * so issued jobs not yet on the engine end ABORTED (ECANCELED) too, and a new entity serves later ones. A
     * transaction already on the engine runs to its end.
     */
    @Override
    public void terminateAll() {
        List<Tx> dropped;
        SchedEntity old;
        lock.lock();
        try {
            dropped = List.copyOf(submitted);
            submitted.clear();
            old = entity;
            entity = gone ? old : SchedEntity.create(scheduler, SchedPriority.NORMAL);
        } finally {
            lock.unlock();
        }
        dropped.forEach(tx -> tx.end(DmaResult.ABORTED));
        old.kill();
    }

    @Override
    public void synchronize() {
        long deadline = System.nanoTime() + syncTimeout.toNanos();
        lock.lock();
        try {
            while (!issued.isEmpty()) {
                long left = deadline - System.nanoTime();
                ErrnoException.check(left > 0, Errno.ETIMEDOUT, name + ": " + issued.size()
                        + " transaction(s) still running after " + syncTimeout);
                ended.awaitNanos(left);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, name + ": dmaengine_synchronize interrupted", e);
        } finally {
            lock.unlock();
        }
    }

    /** The device goes: no new transactions, everything pending aborted. */
    void close() {
        lock.lock();
        try {
            gone = true;
        } finally {
            lock.unlock();
        }
        terminateAll();
    }

    /** One transaction: its command, the ranges it reads and writes, its callback and its fault. */
    private final class Tx implements DmaTxDescriptor {
        private final GpuCommand command;
        private final long src;
        private final long dst;
        private final long len;
        private final int flags;
        private volatile Consumer<DmaTxResult> callback;
        private volatile HwFault fault;
        private long cookie;

        Tx(GpuCommand command, long src, long dst, long len, int flags) {
            this.command = command;
            this.flags = flags;
            this.src = src;
            this.dst = dst;
            this.len = len;
        }

        @Override
        public void setCallback(Consumer<DmaTxResult> callback) {
            lock.lock();
            try {
                ErrnoException.check(cookie == 0, Errno.EINVAL, name + ": callback set after submit of cookie "
                        + cookie);
                this.callback = callback;
            } finally {
                lock.unlock();
            }
        }

        @Override
        public long submit() {
            lock.lock();
            try {
                ErrnoException.check(cookie == 0, Errno.EINVAL, name + ": descriptor submitted twice (cookie "
                        + cookie + ")");
                ErrnoException.check(!gone, Errno.ENODEV, name + ": submit on a channel whose device is gone");
                cookie = ++lastCookie;
                submitted.add(this);
                active.put(cookie, this);
                return cookie;
            } finally {
                lock.unlock();
            }
        }

        void fault(HwFault f) {
            fault = f;
        }

        void ended(Fence finished) {
            end(finished.error().isEmpty() ? DmaResult.NOERROR : finished.error().get() == Errno.ECANCELED
                    ? DmaResult.ABORTED : faultResult());
        }

        /** Which side the engine could not reach: the fault address against the source and destination ranges. */
        private DmaResult faultResult() {
            HwFault f = fault;
            if (f == null) {
                return DmaResult.ABORTED;
            }
            if (f.status() == ST_PAGE_FAULT) {
                return (f.mmuStatus() & MMU_FAULT_WRITE) != 0 ? DmaResult.WRITE_FAILED : DmaResult.READ_FAILED;
            }
            long at = f.address() & ~APERTURE_SYSTEM;
            if (f.status() == ST_DMA_FAULT && src >= 0 && at >= src && at < src + len) {
                return DmaResult.READ_FAILED;
            }
            if (f.status() == ST_DMA_FAULT && at >= dst && at < dst + len) {
                return DmaResult.WRITE_FAILED;
            }
            return DmaResult.ABORTED;
        }

        /** {@code vchan_cookie_complete}: the cookie is complete (or failed) before its callback runs. */
        void end(DmaResult result) {
            if (result != DmaResult.NOERROR) {
                failed.add(cookie);
            }
            active.remove(cookie);
            Consumer<DmaTxResult> cb = callback;
            try {
                if (cb != null && (flags & PREP_INTERRUPT) != 0) {
                    cb.accept(new DmaTxResult(result, result == DmaResult.NOERROR ? 0 : len));
                }
            } catch (RuntimeException e) {
                LOG.error("{}: callback of cookie {} failed", name, cookie, e);
            } finally {
                lock.lock();
                try {
                    issued.remove(cookie);
                    ended.signalAll();
                } finally {
                    lock.unlock();
                }
            }
        }
    }
}
