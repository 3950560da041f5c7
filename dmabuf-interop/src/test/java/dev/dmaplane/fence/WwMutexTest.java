package dev.dmaplane.fence;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Wound/wait mutex semantics from {@code Documentation/locking/ww-mutex-design.rst} and
 * {@code kernel/locking/ww_mutex.h}. Each transaction runs on its own {@link Actor} thread, since an acquire
 * context belongs to one task; "blocked" is observed as the thread parked on the mutex, never by sleeping.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class WwMutexTest {
    private final Actor older = new Actor("older");
    private final Actor younger = new Actor("younger");
    private final Actor plain = new Actor("plain");

    @AfterEach
    void stopActors() throws InterruptedException {
        older.close();
        younger.close();
        plain.close();
    }

    private static Errno errnoOf(Actor.ThrowingRunnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    /** Two contexts, the first created (smaller stamp) on {@code older}, the second on {@code younger}. */
    private WwAcquireContext[] contexts(WwClass cls) throws Exception {
        WwAcquireContext o = older.call(() -> new WwAcquireContext(cls));
        WwAcquireContext y = younger.call(() -> new WwAcquireContext(cls));
        assertTrue(o.stamp() < y.stamp());
        return new WwAcquireContext[] {o, y};
    }

    /** ww-mutex-design.rst, method 3: -EALREADY when the context already holds the lock; nothing changes. */
    @Test
    void ealreadyForALockTheContextHolds() throws Exception {
        WwClass cls = WwClass.waitDie("test");
        WwMutex m = new WwMutex("m", cls);
        older.run(() -> {
            try (WwAcquireContext ctx = new WwAcquireContext(cls)) {
                m.lock(ctx);
                ErrnoException e = assertThrows(ErrnoException.class, () -> m.lock(ctx));
                assertEquals(Errno.EALREADY, e.errno());
                assertTrue(e.getMessage().contains("'m'"), e.getMessage());
                assertEquals(1, ctx.acquired());
                assertTrue(m.isLockedBy(ctx));
                m.unlock();
                assertEquals(0, ctx.acquired());
                assertFalse(m.isLocked());
            }
        });
    }

    /**
     * ww_mutex.h {@code __ww_mutex_check_kill}, Wait-Die: a younger context that holds a lock and asks for one an
     * older context holds dies at once with -EDEADLK; after releasing everything it sleeps in
     * {@code ww_mutex_lock_slow} until the older one lets go.
     */
    @Test
    void waitDieKillsTheYoungerRequester() throws Exception {
        WwClass cls = WwClass.waitDie("test");
        WwMutex a = new WwMutex("a", cls);
        WwMutex b = new WwMutex("b", cls);
        WwAcquireContext[] ctx = contexts(cls);
        older.run(() -> a.lock(ctx[0]));
        younger.run(() -> b.lock(ctx[1]));

        assertEquals(Errno.EDEADLK, younger.call(() -> errnoOf(() -> a.lock(ctx[1]))));
        assertTrue(b.isLockedBy(ctx[1]), "dying does not release anything by itself");
        assertEquals(Errno.EINVAL, younger.call(() -> errnoOf(() -> a.lockSlow(ctx[1]))),
                "lock_slow before releasing the other locks");
        younger.run(b::unlock);
        Future<Void> slow = younger.submit(() -> a.lockSlow(ctx[1]));
        younger.awaitBlockedOn("a");
        assertFalse(slow.isDone());
        older.run(a::unlock);
        Actor.get(slow);
        assertTrue(a.isLockedBy(ctx[1]));
        younger.run(() -> {
            b.lock(ctx[1]);
            a.unlock();
            b.unlock();
            ctx[1].close();
        });
        older.run(ctx[0]::close);
    }

    /** ww-mutex-design.rst, Wait-Die: an older context waits for a younger holder instead of dying. */
    @Test
    void waitDieOlderWaitsForYoungerHolder() throws Exception {
        WwClass cls = WwClass.waitDie("test");
        WwMutex a = new WwMutex("a", cls);
        WwMutex b = new WwMutex("b", cls);
        WwAcquireContext[] ctx = contexts(cls);
        older.run(() -> a.lock(ctx[0]));
        younger.run(() -> b.lock(ctx[1]));
        Future<Void> wait = older.submit(() -> b.lock(ctx[0]));
        older.awaitBlockedOn("b");
        // The younger one now wants the older one's lock: it dies, the older one keeps waiting.
        assertEquals(Errno.EDEADLK, younger.call(() -> errnoOf(() -> a.lock(ctx[1]))));
        assertFalse(wait.isDone());
        younger.run(b::unlock);
        Actor.get(wait);
        assertTrue(b.isLockedBy(ctx[0]));
        older.run(() -> {
            a.unlock();
            b.unlock();
        });
    }

    /**
     * ww_mutex.h {@code __ww_mutex_kill}: a context that holds nothing is never killed; it waits even for an
     * older holder (this is what makes the slow path safe).
     */
    @Test
    void aContextHoldingNothingWaits() throws Exception {
        WwClass cls = WwClass.waitDie("test");
        WwMutex a = new WwMutex("a", cls);
        WwAcquireContext[] ctx = contexts(cls);
        older.run(() -> a.lock(ctx[0]));
        Future<Void> wait = younger.submit(() -> a.lock(ctx[1]));
        younger.awaitBlockedOn("a");
        older.run(a::unlock);
        Actor.get(wait);
        assertTrue(a.isLockedBy(ctx[1]));
        younger.run(a::unlock);
    }

    /**
     * ww_mutex.h {@code __ww_mutex_wound} and {@code __ww_mutex_check_kill}, Wound-Wait: an older context that
     * queues for a lock a younger one holds wounds it; the younger one is preempted lazily, only when it next
     * finds a lock contended (an uncontended lock still succeeds), and then gets -EDEADLK.
     */
    @Test
    void woundWaitOlderWoundsTheYoungerHolder() throws Exception {
        WwClass cls = WwClass.woundWait("test");
        WwMutex a = new WwMutex("a", cls);
        WwMutex b = new WwMutex("b", cls);
        WwMutex c = new WwMutex("c", cls);
        WwAcquireContext[] ctx = contexts(cls);
        younger.run(() -> a.lock(ctx[1]));
        older.run(() -> b.lock(ctx[0]));
        Future<Void> wounding = older.submit(() -> a.lock(ctx[0]));
        older.awaitBlockedOn("a");

        younger.run(() -> c.lock(ctx[1]));
        assertTrue(c.isLockedBy(ctx[1]), "a wounded context dies only under contention");
        ErrnoException e = younger.call(() -> assertThrows(ErrnoException.class, () -> b.lock(ctx[1])));
        assertEquals(Errno.EDEADLK, e.errno());
        assertTrue(e.getMessage().contains("wounded"), e.getMessage());
        WwMutex d = new WwMutex("d", cls);
        assertEquals(Errno.EINVAL, younger.call(() -> errnoOf(() -> d.lock(ctx[1]))),
                "after EDEADLK only the contended lock may be taken");
        assertFalse(d.isLocked());
        assertFalse(wounding.isDone());

        younger.run(() -> {
            c.unlock();
            a.unlock();
        });
        Actor.get(wounding);
        assertTrue(a.isLockedBy(ctx[0]));
        Future<Void> slow = younger.submit(() -> b.lockSlow(ctx[1]));
        younger.awaitBlockedOn("b");
        older.run(() -> {
            a.unlock();
            b.unlock();
        });
        Actor.get(slow);
        younger.run(() -> {
            b.unlock();
            ctx[1].close();
        });
    }

    /**
     * ww_mutex.h {@code __ww_mutex_wound}: the wounder wakes the wounded holder, which dies with -EDEADLK while
     * it is still waiting for another lock.
     */
    @Test
    void woundWaitWakesAWaitingHolderToDie() throws Exception {
        WwClass cls = WwClass.woundWait("test");
        WwMutex a = new WwMutex("a", cls);
        WwMutex b = new WwMutex("b", cls);
        WwMutex c = new WwMutex("c", cls);
        WwAcquireContext[] ctx = contexts(cls);
        plain.run(c::lock);
        younger.run(() -> a.lock(ctx[1]));
        Future<Errno> youngerWait = younger.submit(() -> errnoOf(() -> c.lock(ctx[1])));
        younger.awaitBlockedOn("c");
        older.run(() -> b.lock(ctx[0]));
        Future<Void> wounding = older.submit(() -> a.lock(ctx[0]));
        assertEquals(Errno.EDEADLK, Actor.get(youngerWait));
        younger.run(a::unlock);
        Actor.get(wounding);
        assertTrue(a.isLockedBy(ctx[0]));
        plain.run(c::unlock);
        older.run(() -> {
            a.unlock();
            b.unlock();
        });
    }

    /** ww-mutex-design.rst, Wound-Wait: a younger context waits for an older holder (no back-off unless wounded). */
    @Test
    void woundWaitYoungerWaitsForOlderHolder() throws Exception {
        WwClass cls = WwClass.woundWait("test");
        WwMutex a = new WwMutex("a", cls);
        WwMutex b = new WwMutex("b", cls);
        WwAcquireContext[] ctx = contexts(cls);
        older.run(() -> a.lock(ctx[0]));
        younger.run(() -> b.lock(ctx[1]));
        Future<Void> wait = younger.submit(() -> a.lock(ctx[1]));
        younger.awaitBlockedOn("a");
        older.run(a::unlock);
        Actor.get(wait);
        assertTrue(a.isLockedBy(ctx[1]));
        younger.run(() -> {
            a.unlock();
            b.unlock();
        });
    }

    /**
     * ww-mutex-design.rst "Lockdep": the misuse the debug build warns about is refused here, with nothing changed:
     * locking after {@code ww_acquire_done}, {@code ww_acquire_*} twice, {@code lock_slow} without -EDEADLK,
     * another class, a context of another task, {@code ww_acquire_fini} with locks held.
     */
    @Test
    void contextMisuse() throws Exception {
        WwClass cls = WwClass.waitDie("test");
        WwMutex a = new WwMutex("a", cls);
        WwMutex b = new WwMutex("b", cls);
        WwMutex foreign = new WwMutex("foreign", WwClass.waitDie("other"));
        WwAcquireContext ctx = older.call(() -> new WwAcquireContext(cls));
        older.run(() -> {
            assertEquals(Errno.EINVAL, errnoOf(() -> a.lockSlow(ctx)), "lock_slow without -EDEADLK");
            assertEquals(Errno.EINVAL, errnoOf(() -> foreign.lock(ctx)), "another ww_class");
            a.lock(ctx);
            assertEquals(Errno.EBUSY, errnoOf(ctx::close), "fini with a lock held");
            assertFalse(ctx.isClosed());
            ctx.done();
            assertEquals(Errno.EINVAL, errnoOf(ctx::done));
            assertEquals(Errno.EINVAL, errnoOf(() -> b.lock(ctx)), "lock after ww_acquire_done");
            assertFalse(b.isLocked());
            assertEquals(Errno.EDEADLK, errnoOf(a::lock), "recursive locking of a held mutex");
        });
        assertEquals(Errno.EPERM, younger.call(() -> errnoOf(() -> b.lock(ctx))), "a context of another thread");
        assertEquals(Errno.EPERM, younger.call(() -> errnoOf(a::unlock)), "unlock by a thread that does not hold it");
        older.run(() -> {
            a.unlock();
            assertEquals(Errno.EPERM, errnoOf(a::unlock), "unlock of an unlocked mutex");
            ctx.close();
            assertEquals(Errno.EINVAL, errnoOf(ctx::close));
            assertEquals(Errno.EINVAL, errnoOf(() -> a.lock(ctx)), "lock after ww_acquire_fini");
        });
        assertEquals(Errno.EINVAL, errnoOf(() -> new WwAcquireContext(null)));
        assertEquals(Errno.EINVAL, errnoOf(() -> new WwMutex("x", null)));
    }

    /** ww-mutex-design.rst, method 4 and {@code ww_mutex_trylock}: the mutex used without a context. */
    @Test
    void withoutContext() throws Exception {
        WwClass cls = WwClass.waitDie("test");
        WwMutex m = new WwMutex("m", cls);
        older.run(() -> assertTrue(m.tryLock()));
        assertFalse(younger.call(m::tryLock));
        Future<Void> wait = younger.submit(() -> m.lock());
        younger.awaitBlockedOn("m");
        older.run(m::unlock);
        Actor.get(wait);
        assertTrue(younger.call(m::isHeldByCurrentThread));
        assertFalse(m.isLockedBy(null));
        younger.run(m::unlock);
    }

    /** mutex.c {@code __mutex_lock_common} with TASK_INTERRUPTIBLE: a signal ends the wait with -EINTR. */
    @Test
    void interruptibleLock() throws Exception {
        WwClass cls = WwClass.woundWait("test");
        WwMutex m = new WwMutex("m", cls);
        older.run(m::lock);
        WwAcquireContext ctx = younger.call(() -> new WwAcquireContext(cls));
        Object[] result = younger.call(() -> {
            Thread.currentThread().interrupt();
            ErrnoException e = assertThrows(ErrnoException.class, () -> m.lockInterruptible(ctx));
            return new Object[] {e.errno(), Thread.interrupted()};
        });
        assertSame(Errno.EINTR, result[0]);
        assertEquals(true, result[1]);
        assertEquals(0, ctx.acquired());
        older.run(m::unlock);
        younger.run(() -> {
            m.lockInterruptible(ctx);
            m.unlock();
            ctx.close();
        });
    }
}
