package dev.dmaplane.fence;

import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The point of {@code Documentation/locking/ww-mutex-design.rst}: transactions that lock arbitrary sets of
 * objects in arbitrary order, backing off on -EDEADLK (method 1, as {@link Reservations#lockAll} does), never
 * deadlock and always hold every object they touch. Eight threads each run 300 transactions over random subsets
 * of six reservations, in random order, and increment each locked object's counter non-atomically (read, yield,
 * write): a missing exclusion would lose updates, a missing back-off would hang past the deadline (the
 * workers are daemons, so a deadlocked run cannot keep the test JVM alive).
 */
class ReservationConcurrencyTest {
    private static final int THREADS = 8;
    private static final int ROUNDS = 300;
    private static final int OBJECTS = 6;
    private static final long DEADLINE_SECONDS = 60;

    /** What one worker did: how often it incremented each object, and how often it had to back off. */
    private record Work(long[] increments, long backoffs) {
    }

    @ParameterizedTest
    @EnumSource(WwAlgorithm.class)
    @Timeout(value = DEADLINE_SECONDS + 30, unit = TimeUnit.SECONDS)
    void lockAllNeverDeadlocksAndLosesNoUpdate(WwAlgorithm algorithm) throws Exception {
        WwClass cls = WwClass.of("stress-" + algorithm, algorithm);
        List<Reservation> objs = new ArrayList<>();
        for (int i = 0; i < OBJECTS; i++) {
            objs.add(new Reservation("bo" + i, cls));
        }
        long[] counters = new long[OBJECTS];
        CyclicBarrier start = new CyclicBarrier(THREADS);
        ExecutorService pool = Executors.newFixedThreadPool(THREADS, r -> {
            Thread t = new Thread(r, "resv-stress");
            t.setDaemon(true);
            return t;
        });
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(DEADLINE_SECONDS);
        try {
            List<Future<Work>> workers = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                long seed = 0x5eed_0000L + t;
                workers.add(pool.submit(() -> {
                    Random rnd = new Random(seed);
                    long[] mine = new long[OBJECTS];
                    long backoffs = 0;
                    start.await(DEADLINE_SECONDS, TimeUnit.SECONDS);
                    for (int round = 0; round < ROUNDS; round++) {
                        List<Integer> picked = new ArrayList<>(List.of(0, 1, 2, 3, 4, 5));
                        Collections.shuffle(picked, rnd);
                        picked = picked.subList(0, 2 + rnd.nextInt(OBJECTS - 1));
                        List<Reservation> set = picked.stream().map(objs::get).toList();
                        try (WwAcquireContext ctx = new WwAcquireContext(cls)) {
                            backoffs += Reservations.lockAll(set, ctx);
                            ctx.done();
                            for (int idx : picked) {
                                long v = counters[idx];
                                Thread.yield();
                                counters[idx] = v + 1;
                                mine[idx]++;
                            }
                            Reservations.unlockAll(set);
                        }
                    }
                    return new Work(mine, backoffs);
                }));
            }
            long[] expected = new long[OBJECTS];
            long backoffs = 0;
            for (Future<Work> w : workers) {
                Work work;
                try {
                    work = w.get(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                } catch (TimeoutException e) {
                    fail(algorithm + ": transactions did not finish within " + DEADLINE_SECONDS + " s (deadlock?)");
                    return;
                } catch (ExecutionException e) {
                    throw new AssertionError(algorithm + ": a worker failed", e.getCause());
                }
                for (int i = 0; i < OBJECTS; i++) {
                    expected[i] += work.increments()[i];
                }
                backoffs += work.backoffs();
            }
            assertArrayEquals(expected, counters, algorithm + ": lost updates " + Arrays.toString(expected)
                    + " vs " + Arrays.toString(counters));
            assertTrue(backoffs > 0, algorithm + ": no transaction ever had to back off");
            for (Reservation r : objs) {
                assertTrue(!r.isLocked(), r + " is still locked");
            }
            System.out.printf("%s: %d transactions, %d EDEADLK back-offs, counters %s%n", algorithm,
                    THREADS * ROUNDS, backoffs, Arrays.toString(counters));
        } finally {
            pool.shutdownNow();
        }
        assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS), "worker threads did not stop");
    }
}
