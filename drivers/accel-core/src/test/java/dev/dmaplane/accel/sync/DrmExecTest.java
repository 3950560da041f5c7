package dev.dmaplane.accel.sync;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Reservation;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** drm_exec ({@code drivers/gpu/drm/drm_exec.c}): lock all, back off on contention, duplicates, fence slots, fini. */
class DrmExecTest {
    /**
     * Two transactions lock the same two objects in opposite order, forced to hold one each first (latches). Under
     * the reservation class's Wait-Die the younger gets EDEADLK, drm_exec drops its lock, waits for the contended
     * object with lockSlow and starts over; both finish, nothing stays locked.
     */
    @Test
    void oppositeOrderBothFinish() throws Exception {
        Reservation a = new Reservation("a");
        Reservation b = new Reservation("b");
        CountDownLatch olderCreated = new CountDownLatch(1);
        CountDownLatch olderHoldsA = new CountDownLatch(1);
        CountDownLatch youngerHoldsB = new CountDownLatch(1);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            Future<Integer> older = pool.submit(() -> {
                try (DrmExec exec = new DrmExec(0)) {
                    olderCreated.countDown();
                    boolean[] first = {true};
                    int retries = exec.untilAllLocked(e -> {
                        e.prepareObj(a, 1);
                        if (first[0]) {
                            first[0] = false;
                            olderHoldsA.countDown();
                            await(youngerHoldsB);
                        }
                        e.prepareObj(b, 1);
                    });
                    assertEquals(List.of(a, b), exec.objects());
                    assertEquals(1, a.freeSlots());
                    return retries;
                }
            });
            Future<Integer> younger = pool.submit(() -> {
                await(olderCreated);
                try (DrmExec exec = new DrmExec(0)) {
                    boolean[] first = {true};
                    int retries = exec.untilAllLocked(e -> {
                        e.lockObj(b);
                        if (first[0]) {
                            first[0] = false;
                            youngerHoldsB.countDown();
                            await(olderHoldsA);
                        }
                        e.lockObj(a);
                    });
                    assertEquals(2, exec.objects().size());
                    return retries;
                }
            });
            assertEquals(0, older.get(10, TimeUnit.SECONDS));
            assertEquals(1, younger.get(10, TimeUnit.SECONDS));
        } finally {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
        }
        assertFalse(a.isLocked());
        assertFalse(b.isLocked());
    }

    private static void await(CountDownLatch latch) {
        try {
            assertTrue(latch.await(10, TimeUnit.SECONDS), "latch not reached");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    /** drm_exec_lock_obj: a duplicate is EALREADY unless DRM_EXEC_IGNORE_DUPLICATES; fini unlocks all. */
    @Test
    void duplicatesAndFini() {
        Reservation a = new Reservation("a");
        try (DrmExec exec = new DrmExec(DrmExec.IGNORE_DUPLICATES)) {
            exec.untilAllLocked(e -> {
                e.lockObj(a);
                e.lockObj(a);
            });
            assertEquals(List.of(a), exec.objects());
        }
        assertFalse(a.isLocked());
        try (DrmExec exec = new DrmExec(0)) {
            ErrnoException ex = assertThrows(ErrnoException.class, () -> exec.untilAllLocked(e -> {
                e.lockObj(a);
                e.lockObj(a);
            }));
            assertEquals(Errno.EALREADY, ex.errno());
            assertTrue(a.isLocked());
        }
        assertFalse(a.isLocked());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> new DrmExec(4)).errno());
    }
}
