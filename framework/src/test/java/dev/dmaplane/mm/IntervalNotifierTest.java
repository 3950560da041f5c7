package dev.dmaplane.mm;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.fs.MemFs;
import dev.dmaplane.testing.Blocked;
import dev.dmaplane.testing.ProcessMm;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.mm.Prot.PROT_READ;
import static dev.dmaplane.mm.Prot.PROT_WRITE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Interval notifiers as {@code mm/mmu_notifier.c} implements them and {@code Documentation/mm/hmm.rst} tells
 * drivers to use them: {@code mmu_interval_read_begin} returns a sequence that
 * {@code mmu_interval_read_retry} reports stale once an overlapping invalidation started, sleeps while one is
 * running, and the callback learns the event ({@code enum mmu_notifier_event} in
 * {@code include/linux/mmu_notifier.h}): UNMAP for {@code munmap}, CLEAR for truncate, MIGRATE, PROTECTION for
 * {@code mprotect}, RELEASE from {@code exit_mmap} ({@code mn_itree_release}).
 */
class IntervalNotifierTest extends ProcessMm {
    record Call(MmuRange range, InvalidateReason reason, long seq) {
    }

    private static IntervalNotifier recorder(List<Call> calls) {
        return (range, reason, seq) -> calls.add(new Call(range, reason, seq));
    }

    @Test
    void munmapInvalidatesOverlappingSubscriptionsOnlyAndBumpsTheirSequence() {
        long va = as.mmapAnonymous(8 * PAGE, PROT_READ | PROT_WRITE);
        List<Call> low = new CopyOnWriteArrayList<>();
        List<Call> high = new CopyOnWriteArrayList<>();
        IntervalSubscription lowSub = as.registerNotifier(va, 2 * PAGE, recorder(low));
        IntervalSubscription highSub = as.registerNotifier(va + 6 * PAGE, 2 * PAGE, recorder(high));
        long lowSeq = lowSub.readBegin();
        long highSeq = highSub.readBegin();
        assertFalse(lowSub.readRetry(lowSeq));

        as.munmap(va + PAGE, 2 * PAGE);

        assertEquals(1, low.size());
        assertEquals(new MmuRange(va + PAGE, va + 3 * PAGE), low.getFirst().range());
        assertEquals(InvalidateReason.UNMAP, low.getFirst().reason());
        assertTrue(lowSub.readRetry(lowSeq), "a collision since read_begin");
        assertEquals(low.getFirst().seq(), lowSub.readBegin(), "read_begin now returns the stamped sequence");
        assertFalse(lowSub.readRetry(lowSub.readBegin()));
        assertTrue(high.isEmpty());
        assertFalse(highSub.readRetry(highSeq), "no overlap, no collision");
        assertEquals(1, tracer.select(e -> e.kind() == TraceKind.INVALIDATE).size());
    }

    @Test
    void everyReasonReachesTheCallback() {
        MemFs fs = new MemFs(mem, tracer, "memfs0", false);
        Inode f = fs.create("/f");
        f.truncate(2 * PAGE);
        long anon = as.mmapAnonymous(2 * PAGE, PROT_READ | PROT_WRITE);
        long file = as.mmapFile(f, 0, 2 * PAGE, PROT_READ, true);
        List<Call> calls = new CopyOnWriteArrayList<>();
        as.registerNotifier(anon, 2 * PAGE, recorder(calls));
        as.registerNotifier(file, 2 * PAGE, recorder(calls));

        as.write(anon, MemorySegment.ofArray(new byte[]{1}));
        as.migrate(anon);
        as.mprotect(anon, PAGE, PROT_READ);
        f.truncate(PAGE);
        as.munmap(anon + PAGE, PAGE);
        as.close();

        assertEquals(List.of(InvalidateReason.MIGRATE, InvalidateReason.PROTECTION, InvalidateReason.CLEAR,
                        InvalidateReason.UNMAP, InvalidateReason.RELEASE, InvalidateReason.RELEASE),
                calls.stream().map(Call::reason).toList());
        assertEquals(new MmuRange(file + PAGE, file + 2 * PAGE), calls.get(2).range());
        for (int i = 1; i < calls.size(); i++) {
            assertTrue(calls.get(i).seq() >= calls.get(i - 1).seq(), "sequence numbers only grow");
        }
        assertEquals(calls.get(4).seq(), calls.get(5).seq(), "one release pass stamps every subscription alike");
    }

    @Test
    void closedSubscriptionIsNotCalledAgain() {
        long va = as.mmapAnonymous(2 * PAGE, PROT_READ);
        List<Call> calls = new CopyOnWriteArrayList<>();
        IntervalSubscription sub = as.registerNotifier(va, 2 * PAGE, recorder(calls));
        sub.close();
        sub.close();
        as.munmap(va, 2 * PAGE);
        assertTrue(calls.isEmpty());
    }

    @Test
    void emptyRangeIsEoverflowAsInTheKernel() {
        assertEquals(Errno.EOVERFLOW, assertThrows(ErrnoException.class,
                () -> as.registerNotifier(0x10000, 0, (r, why, s) -> { })).errno());
        assertEquals(Errno.EOVERFLOW, assertThrows(ErrnoException.class,
                () -> as.registerNotifier(Long.MAX_VALUE - 5, 10, (r, why, s) -> { })).errno());
    }

    @Test
    @Timeout(value = 20, unit = TimeUnit.SECONDS)
    void readBeginWaitsForARunningInvalidation() throws Exception {
        long va = as.mmapAnonymous(PAGE, PROT_READ | PROT_WRITE);
        CountDownLatch inCallback = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        AtomicReference<Long> seen = new AtomicReference<>();
        IntervalSubscription sub = as.registerNotifier(va, PAGE, (range, reason, seq) -> {
            seen.set(seq);
            inCallback.countDown();
            try {
                assertTrue(release.await(10, TimeUnit.SECONDS));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            Future<?> unmapper = pool.submit(() -> as.munmap(va, PAGE));
            assertTrue(inCallback.await(10, TimeUnit.SECONDS));
            Blocked.Call<Long> reader = Blocked.start("read_begin", sub::readBegin)
                    .awaitBlockedIn(Blocked.CONDITION_AWAIT_UNINTERRUPTIBLY, "dev.dmaplane.mm.impl.NotifierTree.readBegin");
            assertFalse(reader.isDone(), "read_begin sleeps while the invalidation runs");
            assertTrue(sub.readRetry(seen.get() - 2), "older sequences are stale already");
            release.countDown();
            assertEquals(seen.get(), reader.get());
            unmapper.get(10, TimeUnit.SECONDS);
        } finally {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
        }
    }

    @Test
    @Timeout(value = 20, unit = TimeUnit.SECONDS)
    void removeWaitsForARunningCallbackAndNoCallFollows() throws Exception {
        long va = as.mmapAnonymous(2 * PAGE, PROT_READ);
        CountDownLatch inCallback = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        List<Call> calls = new CopyOnWriteArrayList<>();
        IntervalSubscription sub = as.registerNotifier(va, 2 * PAGE, (range, reason, seq) -> {
            calls.add(new Call(range, reason, seq));
            inCallback.countDown();
            try {
                release.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            Future<?> unmapper = pool.submit(() -> as.munmap(va, PAGE));
            assertTrue(inCallback.await(10, TimeUnit.SECONDS));
            Blocked.Call<Void> remover = Blocked.run("notifier_remove", sub::close)
                    .awaitBlockedIn(Blocked.CONDITION_AWAIT_UNINTERRUPTIBLY, "dev.dmaplane.mm.impl.NotifierTree.remove");
            assertFalse(remover.isDone(), "mmu_interval_notifier_remove waits for the invalidation");
            release.countDown();
            remover.get();
            unmapper.get(10, TimeUnit.SECONDS);
        } finally {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
        }
        as.munmap(va + PAGE, PAGE);
        assertEquals(1, calls.size(), "nothing after remove returned");
    }

    @Test
    void readBeginFromItsOwnCallbackIsEdeadlkInsteadOfHanging() {
        long va = as.mmapAnonymous(PAGE, PROT_READ);
        AtomicReference<IntervalSubscription> self = new AtomicReference<>();
        AtomicReference<Throwable> thrown = new AtomicReference<>();
        self.set(as.registerNotifier(va, PAGE, (range, reason, seq) -> {
            try {
                self.get().readBegin();
            } catch (Throwable t) {
                thrown.set(t);
            }
        }));
        as.munmap(va, PAGE);
        ErrnoException e = assertInstanceOf(ErrnoException.class, thrown.get());
        assertEquals(Errno.EDEADLK, e.errno());
    }

    @Test
    void copyOnWriteOfAMappedFilePageIsACollision() {
        MemFs fs = new MemFs(mem, tracer, "memfs0", false);
        Inode f = fs.create("/f");
        f.write(0, MemorySegment.ofArray(new byte[]{7}));
        long va = as.mmapFile(f, 0, PAGE, PROT_READ | PROT_WRITE, false);
        as.read(va, MemorySegment.ofArray(new byte[1]));
        List<Call> calls = new CopyOnWriteArrayList<>();
        IntervalSubscription sub = as.registerNotifier(va, PAGE, recorder(calls));
        long seq = sub.readBegin();
        long before = as.physAddr(va).orElseThrow();
        as.write(va, MemorySegment.ofArray(new byte[]{8}));
        assertNotEquals(before, as.physAddr(va).orElseThrow());
        assertEquals(List.of(InvalidateReason.CLEAR), calls.stream().map(Call::reason).toList());
        assertTrue(sub.readRetry(seq));
    }

    @Test
    void throwingCallbackCannotVetoTheInvalidation() {
        long va = as.mmapAnonymous(PAGE, PROT_READ);
        as.registerNotifier(va, PAGE, (range, reason, seq) -> {
            throw new IllegalStateException("driver bug");
        });
        as.munmap(va, PAGE);
        assertTrue(as.vmas().isEmpty());
        assertTrue(tracer.select(e -> e.detail().contains("driver bug")).size() == 1);
    }
}
