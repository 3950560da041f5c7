package dev.dmaplane.driver.siw;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A device's MPA timer thread ({@code siw_cm_wq}) is gone when {@link MpaTimers#stop} returns, also right after it
 * ran a timer: a terminated executor's worker can still be on its way out of its run, so the stop joins the thread
 * itself. Every siw test counts the {@code siw-} threads left after closing its devices.
 */
@Timeout(60)
class MpaTimersTest {
    @Test
    void noTimerThreadIsAliveOnceStopReturns() throws Exception {
        for (int round = 0; round < 200; round++) {
            MpaTimers timers = new MpaTimers();
            timers.start("siwT" + round);
            timers.set(Duration.ofNanos(1), Duration.ofNanos(1));
            CountDownLatch fired = new CountDownLatch(1);
            timers.forReply(fired::countDown);
            assertTrue(fired.await(10, TimeUnit.SECONDS), "the timer fires");
            timers.stop();
            String name = "siw-cm-siwT" + round;
            assertEquals(0, Thread.getAllStackTraces().keySet().stream()
                    .filter(t -> t.getName().equals(name) && t.isAlive()).count(), "round " + round);
        }
    }
}
