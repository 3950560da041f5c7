package dev.dmaplane.irq;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.testing.Blocked;
import org.junit.jupiter.api.Test;

import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/** The eventfd counter semantics of {@code fs/eventfd.c} ({@code eventfd_signal}, a blocking {@code read}). */
class IrqTriggerTest {
    @Test
    void signalsAddUpAndAReadTakesThemAll() throws Exception {
        IrqTrigger t = new IrqTrigger();
        t.signal();
        t.signal();
        assertEquals(2, t.count());
        assertEquals(2, t.await(0, TimeUnit.SECONDS));
        assertEquals(0, t.count());
        assertEquals(0, t.await(0, TimeUnit.SECONDS), "nothing signalled: the wait times out with 0");
    }

    @Test
    void aWaitingReaderIsWokenBySignal() throws Exception {
        IrqTrigger t = new IrqTrigger();
        Blocked.Call<Long> reader = Blocked.start("eventfd reader", () -> t.await(10, TimeUnit.SECONDS))
                .awaitBlockedIn("java.lang.Object.wait", "dev.dmaplane.irq.IrqTrigger.await");
        t.signal();
        assertEquals(1L, reader.get());
    }

    @Test
    void aNegativeTimeoutIsRefused() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> new IrqTrigger().await(-1, TimeUnit.SECONDS));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("-1"), e.getMessage());
    }
}
