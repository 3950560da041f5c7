package dev.dmaplane.fence;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code struct dma_resv} rules from {@code include/linux/dma-resv.h} (enum dma_resv_usage,
 * {@code dma_resv_usage_rw}) and {@code drivers/dma-buf/dma-resv.c}.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class ReservationTest {
    private static final Duration LONG = Duration.ofSeconds(10);
    private final Actor other = new Actor("other");
    private final FenceContext gfx = FenceContext.allocate("gpu", "gfx");
    private final FenceContext copy = FenceContext.allocate("gpu", "copy");

    @AfterEach
    void stopActors() throws InterruptedException {
        other.close();
    }

    private static Errno errnoOf(Actor.ThrowingRunnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    private static List<ResvUsage> usages(Reservation r) {
        return r.entries().stream().map(ResvFence::usage).toList();
    }

    /** dma-resv.h: the order KERNEL &lt; WRITE &lt; READ &lt; BOOKKEEP, and {@code dma_resv_usage_rw}. */
    @Test
    void usageOrder() {
        assertEquals(List.of(ResvUsage.KERNEL, ResvUsage.WRITE, ResvUsage.READ, ResvUsage.BOOKKEEP),
                List.of(ResvUsage.values()));
        assertSame(ResvUsage.READ, ResvUsage.forAccess(true), "a writer waits for readers and writers");
        assertSame(ResvUsage.WRITE, ResvUsage.forAccess(false), "a reader waits for writers only");
        assertTrue(ResvUsage.READ.includes(ResvUsage.KERNEL));
        assertTrue(ResvUsage.READ.includes(ResvUsage.READ));
        assertFalse(ResvUsage.READ.includes(ResvUsage.BOOKKEEP));
        assertFalse(ResvUsage.KERNEL.includes(ResvUsage.WRITE));
    }

    /**
     * dma-resv.h enum dma_resv_usage: a new writer waits for every reader and writer, a new reader only for
     * writers (and kernel moves), and BOOKKEEP fences are seen only by an explicit BOOKKEEP query.
     */
    @Test
    void whoWaitsForWhom() {
        Reservation r = new Reservation("bo");
        Fence move = FenceContext.allocate("ttm", "move").createFence();
        Fence write = gfx.createFence();
        Fence read1 = copy.createFence();
        Fence read2 = FenceContext.allocate("vdec", "ring").createFence();
        Fence tlb = FenceContext.allocate("vm", "tlb").createFence();
        r.lock();
        r.reserveFences(5);
        r.addFence(move, ResvUsage.KERNEL);
        r.addFence(write, ResvUsage.WRITE);
        r.addFence(read1, ResvUsage.READ);
        r.addFence(read2, ResvUsage.READ);
        r.addFence(tlb, ResvUsage.BOOKKEEP);
        r.unlock();

        assertEquals(List.of(move, write, read1, read2), r.fences(ResvUsage.forAccess(true)));
        assertEquals(List.of(move, write), r.fences(ResvUsage.forAccess(false)));
        assertEquals(List.of(move), r.fences(ResvUsage.KERNEL));
        assertEquals(List.of(move, write, read1, read2, tlb), r.fences(ResvUsage.BOOKKEEP));

        move.signal();
        write.signal();
        assertTrue(r.testSignaled(ResvUsage.forAccess(false)), "a reader need not wait for other readers");
        assertTrue(r.await(ResvUsage.forAccess(false), Duration.ZERO));
        assertFalse(r.testSignaled(ResvUsage.forAccess(true)), "a writer waits for the readers");
        assertFalse(r.await(ResvUsage.forAccess(true), Duration.ofMillis(20)));
        read1.signal();
        read2.signal();
        assertTrue(r.testSignaled(ResvUsage.READ));
        assertTrue(r.await(ResvUsage.READ, Duration.ZERO), "implicit sync ignores BOOKKEEP fences");
        assertFalse(r.testSignaled(ResvUsage.BOOKKEEP), "memory management still sees them");
        assertEquals(List.of(tlb), r.fences(ResvUsage.BOOKKEEP));
        assertEquals(5, r.entries().size(), "signalled fences stay until pruned");
    }

    /** dma-resv.c {@code dma_resv_wait_timeout}: returns when another thread signals the last fence. */
    @Test
    void awaitWakesWhenTheFencesSignal() throws Exception {
        Reservation r = new Reservation("bo");
        Fence kernel = FenceContext.allocate("ttm", "move").createFence();
        Fence write = gfx.createFence();
        r.lock();
        r.reserveFences(2);
        r.addFence(kernel, ResvUsage.KERNEL);
        r.addFence(write, ResvUsage.WRITE);
        r.unlock();
        CountDownLatch go = new CountDownLatch(1);
        Future<Void> signaller = other.submit(() -> {
            assertTrue(go.await(10, TimeUnit.SECONDS));
            kernel.signal();
            write.signal();
        });
        go.countDown();
        assertTrue(r.await(ResvUsage.WRITE, LONG));
        Actor.get(signaller);
        assertEquals(Errno.EINVAL, errnoOf(() -> r.await(ResvUsage.WRITE, Duration.ofSeconds(-1))));
        assertEquals(Errno.EINVAL, errnoOf(() -> r.fences(null)));
    }

    /**
     * dma-resv.c {@code dma_resv_reserve_fences} and {@code dma_resv_add_fence}: changes need the lock
     * ({@code dma_resv_assert_held}) and a reserved slot (else the kernel's BUG_ON); reserving does not add up;
     * unlocking drops unused slots ({@code dma_resv_reset_max_fences}).
     */
    @Test
    void slotsAndLocking() throws Exception {
        Reservation r = new Reservation("bo");
        Fence a = gfx.createFence();
        assertEquals(Errno.EPERM, errnoOf(() -> r.reserveFences(1)));
        assertEquals(Errno.EPERM, errnoOf(() -> r.addFence(a, ResvUsage.WRITE)));
        r.lock();
        assertEquals(Errno.EPERM, other.call(() -> errnoOf(() -> r.addFence(a, ResvUsage.WRITE))),
                "the lock belongs to the thread that took it");
        assertEquals(Errno.ENOSPC, errnoOf(() -> r.addFence(a, ResvUsage.WRITE)));
        assertEquals(Errno.EINVAL, errnoOf(() -> r.reserveFences(-1)));
        assertEquals(Errno.EINVAL, errnoOf(() -> r.addFence(null, ResvUsage.WRITE)));
        assertEquals(Errno.EINVAL, errnoOf(() -> r.addFence(a, null)));
        assertTrue(r.entries().isEmpty());
        r.reserveFences(1);
        r.reserveFences(1);
        assertEquals(1, r.freeSlots(), "reservations are a minimum, not a sum");
        r.addFence(a, ResvUsage.WRITE);
        Fence b = copy.createFence();
        assertEquals(Errno.ENOSPC, errnoOf(() -> r.addFence(b, ResvUsage.READ)));
        r.reserveFences(2);
        r.unlock();
        assertEquals(0, r.freeSlots());
        r.lock();
        assertEquals(Errno.ENOSPC, errnoOf(() -> r.addFence(b, ResvUsage.READ)),
                "slots reserved under an earlier lock are gone");
        r.unlock();
        assertEquals(Errno.EPERM, errnoOf(r::unlock));
        assertEquals(List.of(a), r.fences(ResvUsage.BOOKKEEP));
    }

    /**
     * dma-resv.c {@code dma_resv_add_fence}: a fence replaces a pending one of its own context whose usage is the
     * same or higher, in place and without a new slot (usage can be raised, never lowered); a signalled fence of
     * any context is replaced too.
     */
    @Test
    void replacementWithinAContext() {
        Reservation r = new Reservation("bo");
        Fence w1 = gfx.createFence();
        Fence w2 = gfx.createFence();
        Fence k3 = gfx.createFence();
        Fence r4 = gfx.createFence();
        r.lock();
        r.reserveFences(1);
        r.addFence(w1, ResvUsage.WRITE);
        assertEquals(0, r.freeSlots());
        r.addFence(w2, ResvUsage.WRITE);
        assertEquals(List.of(w2), r.fences(ResvUsage.BOOKKEEP), "the later fence stands for the earlier one");
        r.addFence(k3, ResvUsage.KERNEL);
        assertEquals(List.of(k3), r.fences(ResvUsage.BOOKKEEP));
        assertEquals(List.of(ResvUsage.KERNEL), usages(r), "usage raised from WRITE to KERNEL");
        assertEquals(Errno.ENOSPC, errnoOf(() -> r.addFence(r4, ResvUsage.READ)),
                "a weaker usage does not replace a stronger one: it needs a slot of its own");
        r.reserveFences(1);
        r.addFence(r4, ResvUsage.READ);
        assertEquals(List.of(ResvUsage.KERNEL, ResvUsage.READ), usages(r));

        Fence other = copy.createFence();
        k3.signal();
        r.addFence(other, ResvUsage.WRITE);
        assertEquals(List.of(other, r4), r.fences(ResvUsage.BOOKKEEP), "the signalled slot was reused");
        assertEquals(0, r.freeSlots());
        r.unlock();
    }

    /**
     * dma-resv.c {@code dma_resv_add_fence} assumes a timeline's fences arrive in order; adding an earlier fence
     * that would replace a later pending one (dropping a dependency) is refused, and containers are refused as
     * the kernel's WARN_ON asks. Nothing changes.
     */
    @Test
    void refusedFences() {
        Reservation r = new Reservation("bo");
        Fence early = gfx.createFence();
        Fence late = gfx.createFence();
        Fence array = Fences.all(List.of(copy.createFence(), copy.createFence()));
        r.lock();
        r.reserveFences(2);
        r.addFence(late, ResvUsage.READ);
        ErrnoException e = assertThrows(ErrnoException.class, () -> r.addFence(early, ResvUsage.WRITE));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains(late.toString()), e.getMessage());
        assertEquals(Errno.EINVAL, errnoOf(() -> r.addFence(array, ResvUsage.READ)));
        assertEquals(List.of(late), r.fences(ResvUsage.BOOKKEEP));
        assertEquals(1, r.freeSlots(), "refused fences take no slot");
        late.signal();
        r.addFence(early, ResvUsage.WRITE);
        assertEquals(List.of(early), r.fences(ResvUsage.BOOKKEEP), "a signalled fence no longer constrains");
        r.unlock();
    }

    /** dma-resv.c {@code dma_resv_reserve_fences} drops signalled fences; {@code dma_resv_replace_fences}. */
    @Test
    void pruneAndReplace() {
        Reservation r = new Reservation("bo");
        Fence preempt = FenceContext.allocate("kfd", "eviction").createFence();
        Fence done = copy.createFence();
        Fence read = gfx.createFence();
        r.lock();
        r.reserveFences(3);
        r.addFence(preempt, ResvUsage.BOOKKEEP);
        r.addFence(done, ResvUsage.WRITE);
        r.addFence(read, ResvUsage.READ);
        done.signal();
        r.reserveFences(1);
        assertEquals(List.of(preempt, read), r.entries().stream().map(ResvFence::fence).toList());
        Fence pageTable = FenceContext.allocate("vm", "pt").createFence();
        r.replaceFences(preempt.context(), pageTable, ResvUsage.BOOKKEEP);
        assertEquals(List.of(pageTable, read), r.fences(ResvUsage.BOOKKEEP));
        r.unlock();
        assertEquals(Errno.EPERM, errnoOf(() -> r.replaceFences(gfx, pageTable, ResvUsage.READ)));
    }

    /** dma-resv.c: {@code reservation_ww_class} is {@code DEFINE_WD_CLASS}, so reservations use Wait-Die. */
    @Test
    void reservationClassIsWaitDie() throws Exception {
        assertSame(WwAlgorithm.WAIT_DIE, Reservation.RESERVATION_WW_CLASS.algorithm());
        Reservation a = new Reservation("a");
        Reservation b = new Reservation("b", WwClass.woundWait("mine"));
        assertSame(Reservation.RESERVATION_WW_CLASS, a.wwClass());
        try (WwAcquireContext ctx = new WwAcquireContext(Reservation.RESERVATION_WW_CLASS)) {
            a.lock(ctx);
            assertTrue(a.isLockedBy(ctx));
            assertEquals(Errno.EALREADY, errnoOf(() -> a.lock(ctx)));
            assertEquals(Errno.EINVAL, errnoOf(() -> b.lock(ctx)), "b's lock is of another class");
            a.unlock();
        }
        assertFalse(other.call(a::isHeldByCurrentThread));
        assertTrue(a.tryLock());
        assertFalse(other.call(a::tryLock));
        a.unlock();
    }

    /** ww-mutex-design.rst method 1: a duplicate entry is reported as -EALREADY and nothing stays locked. */
    @Test
    void lockAllReportsDuplicates() {
        Reservation a = new Reservation("a");
        Reservation b = new Reservation("b");
        try (WwAcquireContext ctx = new WwAcquireContext(Reservation.RESERVATION_WW_CLASS)) {
            assertEquals(Errno.EALREADY, errnoOf(() -> Reservations.lockAll(List.of(a, b, a), ctx)));
            assertFalse(a.isLocked());
            assertFalse(b.isLocked());
            assertEquals(0, Reservations.lockAll(List.of(b, a), ctx));
            assertTrue(a.isLockedBy(ctx) && b.isLockedBy(ctx));
            assertEquals(Errno.EINVAL, errnoOf(() -> Reservations.lockAll(List.of(a), ctx)),
                    "lockAll must start with no locks held");
            Reservations.unlockAll(List.of(a, b));
            assertEquals(Errno.EPERM, errnoOf(() -> Reservations.unlockAll(List.of(a))));
        }
    }
}
