package dev.dmaplane.fence;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.impl.ResvTable;
import dev.dmaplane.fence.impl.Timeouts;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A reservation object, {@code struct dma_resv} ({@code include/linux/dma-resv.h}, {@code drivers/dma-buf/dma-resv.c},
 * the "Reservation Objects" part of {@code Documentation/driver-api/dma-buf.rst}): the fences of the operations
 * using one buffer, each with its {@link ResvUsage}, and the {@link WwMutex} that serialises changes to them and
 * to the buffer's placement.
 * <p>
 * Changing the fences needs the lock: {@link #reserveFences}, {@link #addFence} and {@link #replaceFences} fail
 * with {@code EPERM} unless the calling thread holds it (where the kernel's {@code dma_resv_assert_held} complains).
 * Reading them ({@link #fences}, {@link #await}, {@link #testSignaled}) needs no lock: readers see a consistent
 * snapshot, as under RCU. Slots reserved with {@link #reserveFences} last until {@link #unlock()}, which drops the
 * unused ones as a {@code CONFIG_DEBUG_MUTEXES} kernel does, so a missing reservation shows up at once.
 */
public final class Reservation {
    /**
     * {@code reservation_ww_class}. The kernel defines it with {@code DEFINE_WD_CLASS}: reservation objects use
     * Wait-Die. Use {@link #Reservation(String, WwClass)} for another class, a Wound-Wait one for instance.
     */
    public static final WwClass RESERVATION_WW_CLASS = WwClass.waitDie("reservation_ww_class");

    private static final AtomicLong NEXT_ID = new AtomicLong();

    private final String name;
    private final WwMutex lock;
    private final ResvTable table;

    /** {@code dma_resv_init} in {@link #RESERVATION_WW_CLASS}. */
    public Reservation() {
        this("resv-" + NEXT_ID.incrementAndGet(), RESERVATION_WW_CLASS);
    }

    /** {@code dma_resv_init} in {@link #RESERVATION_WW_CLASS}, named for error messages. */
    public Reservation(String name) {
        this(name, RESERVATION_WW_CLASS);
    }

    /** A reservation whose lock is of {@code wwClass}. */
    public Reservation(String name, WwClass wwClass) {
        this.lock = new WwMutex(name, wwClass);
        this.name = name;
        this.table = new ResvTable(name);
    }

    public String name() {
        return name;
    }

    public WwClass wwClass() {
        return lock.wwClass();
    }

    /** {@code dma_resv_lock}: see {@link WwMutex#lock(WwAcquireContext)} (EDEADLK, EALREADY). */
    public void lock(WwAcquireContext ctx) {
        lock.lock(ctx);
    }

    /** {@code dma_resv_lock_interruptible}: see {@link WwMutex#lockInterruptible}. */
    public void lockInterruptible(WwAcquireContext ctx) {
        lock.lockInterruptible(ctx);
    }

    /** {@code dma_resv_lock_slow}: see {@link WwMutex#lockSlow}. */
    public void lockSlow(WwAcquireContext ctx) {
        lock.lockSlow(ctx);
    }

    /** {@code dma_resv_lock(obj, NULL)}: locks this one reservation alone. */
    public void lock() {
        lock.lock();
    }

    /** {@code dma_resv_trylock}. */
    public boolean tryLock() {
        return lock.tryLock();
    }

    /** {@code dma_resv_unlock}: drops unused reserved slots, then the lock; EPERM unless this thread holds it. */
    public void unlock() {
        ErrnoException.check(lock.isHeldByCurrentThread(), Errno.EPERM, "unlock of " + name + ", which thread "
                + Thread.currentThread().getName() + " does not hold");
        table.resetSlots();
        lock.unlock();
    }

    /** {@code dma_resv_is_locked}. */
    public boolean isLocked() {
        return lock.isLocked();
    }

    /** Whether {@code ctx} holds the lock ({@code dma_resv_locking_ctx(obj) == ctx}). */
    public boolean isLockedBy(WwAcquireContext ctx) {
        return lock.isLockedBy(ctx);
    }

    /** {@code dma_resv_held} for this thread. */
    public boolean isHeldByCurrentThread() {
        return lock.isHeldByCurrentThread();
    }

    /**
     * {@code dma_resv_reserve_fences}: makes room so that {@code n} more fences can be added before unlock.
     * Reservations do not add up: reserving 1 and then 2 leaves room for 2. EPERM without the lock, EINVAL for a
     * negative count, ENOMEM past {@link ResvTable#MAX_FENCES}.
     */
    public void reserveFences(int n) {
        assertHeld("reserveFences(" + n + ")");
        table.reserve(n);
    }

    /**
     * {@code dma_resv_add_fence}: adds {@code fence} for {@code usage}. A pending fence of the same context whose
     * usage is the same or higher is replaced in place (the new fence is later on that timeline, so it stands for
     * the old one; a usage can be raised to a stronger one this way, never lowered), and so is any signalled
     * fence; only otherwise is a reserved slot used, ENOSPC if none is left. EPERM without the lock; EINVAL for
     * a container fence or a fence earlier than the pending one of its context it would replace.
     */
    public void addFence(Fence fence, ResvUsage usage) {
        ErrnoException.check(fence != null, Errno.EINVAL, "fence to add to " + name + " is null");
        ErrnoException.check(usage != null, Errno.EINVAL, "usage of fence " + fence + " on " + name + " is null");
        assertHeld("addFence(" + fence + ", " + usage + ")");
        table.add(fence, usage);
    }

    /**
     * {@code dma_resv_replace_fences}: every fence of {@code context} is replaced by {@code replacement} with
     * {@code usage}, for when the old operations lose access to the buffer once the replacement signals (a
     * preemption fence replaced by a page-table update). EPERM without the lock.
     */
    public void replaceFences(FenceContext context, Fence replacement, ResvUsage usage) {
        ErrnoException.check(context != null, Errno.EINVAL, "context to replace on " + name + " is null");
        ErrnoException.check(replacement != null, Errno.EINVAL, "replacement fence on " + name + " is null");
        ErrnoException.check(usage != null, Errno.EINVAL, "usage of " + replacement + " on " + name + " is null");
        assertHeld("replaceFences(" + context + ", " + replacement + ", " + usage + ")");
        table.replace(context.id(), replacement, usage);
    }

    /**
     * The pending fences whose usage is {@code upTo} or lower, as {@code dma_resv_get_fences} collects them with
     * the unlocked iterator (signalled ones are left out). No lock needed.
     */
    public List<Fence> fences(ResvUsage upTo) {
        ErrnoException.check(upTo != null, Errno.EINVAL, "usage to query on " + name + " is null");
        List<Fence> out = new ArrayList<>();
        for (ResvFence e : table.snapshot()) {
            if (upTo.includes(e.usage()) && !e.fence().isSignaled()) {
                out.add(e.fence());
            }
        }
        return out;
    }

    /** Every entry of the table, signalled or not, with its usage, as the locked iterator and {@code dma_resv_describe} see them. */
    public List<ResvFence> entries() {
        return table.snapshot();
    }

    /** Slots reserved and not used yet (0 after unlock). */
    public int freeSlots() {
        return table.freeSlots();
    }

    /**
     * {@code dma_resv_wait_timeout(obj, usage, true, timeout)}: waits until every fence of {@code usage} or lower
     * has signalled, including fences added while waiting; whether that happened within {@code timeout}, one
     * budget for all. EINTR if interrupted.
     */
    public boolean await(ResvUsage usage, Duration timeout) {
        ErrnoException.check(usage != null, Errno.EINVAL, "usage to wait for on " + name + " is null");
        long deadline = Timeouts.deadline(Timeouts.toNanos(timeout));
        for (;;) {
            List<Fence> pending = fences(usage);
            if (pending.isEmpty()) {
                return true;
            }
            if (!pending.getFirst().await(Duration.ofNanos(Timeouts.remaining(deadline)))) {
                return false;
            }
        }
    }

    /** {@code dma_resv_test_signaled}: whether every fence of {@code usage} or lower has signalled. */
    public boolean testSignaled(ResvUsage usage) {
        return fences(usage).isEmpty();
    }

    private void assertHeld(String what) {
        ErrnoException.check(lock.isHeldByCurrentThread(), Errno.EPERM, what + " on " + name
                + " without holding its lock (dma_resv_assert_held)");
    }

    @Override
    public String toString() {
        return "dma_resv '" + name + "'";
    }
}
