package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.Fixture;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.ReregFlags;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.testing.Blocked;
import dev.dmaplane.testing.Eventually;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.Arrays;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code ibv_rereg_mr(3)} against {@code ibv_dereg_mr(3)} on another thread. The kernel serialises them on the
 * region's uobject ({@code ib_uverbs_rereg_mr} holds it for write, {@code uverbs_destroy_uobject} too), so a
 * deregistration either comes after the re-registration and gives back the new memory, or before it and the
 * re-registration fails: never both working on one region, which would release the old memory twice (dma-debug's
 * {@code DOUBLE_UNMAP}) and leave the new one pinned and mapped past {@code ibv_close_device}. The interleaving is
 * forced with the region's test hook: the re-registration stops right after its checks.
 */
@Timeout(60)
class ReregDeregRaceTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private static final String RELEASE = MrImpl.class.getName() + ".release";

    private final Fixture f = new Fixture();

    @AfterEach
    void close() {
        f.close();
    }

    @Test
    void aDeregistrationDuringAReregistrationWaitsForItAndGivesBackTheNewMemory() throws Exception {
        PciFunction hca = f.machine.pci().function("04:00.0");
        long pins = f.machine.memory().pinsOutstanding();
        int mappings = f.machine.activeDmaMappings(hca);
        VerbsContext ctx = f.open();
        ProtectionDomain pd = ctx.allocPd();
        long a = f.alloc(8 * PAGE);
        long b = f.alloc(4 * PAGE);
        MrImpl mr = (MrImpl) pd.regMr(a, 8 * PAGE, Access.LOCAL_WRITE);
        CountDownLatch checked = new CountDownLatch(1);
        CountDownLatch go = new CountDownLatch(1);
        mr.reregChecked = () -> {
            checked.countDown();
            try {
                assertTrue(go.await(Blocked.TIMEOUT.toNanos(), TimeUnit.NANOSECONDS), "the test let the rereg go on");
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError(e);
            }
        };

        Blocked.Call<Void> rereg = Blocked.run("rereg", () -> mr.rereg(ReregFlags.CHANGE_TRANSLATION, null, b, 4 * PAGE,
                0));
        assertTrue(checked.await(Blocked.TIMEOUT.toNanos(), TimeUnit.NANOSECONDS), "the rereg passed its checks");
        Blocked.Call<Void> dereg = Blocked.run("dereg", mr::destroy);
        awaitDoneOrBlockedIn(dereg, RELEASE);
        boolean deregWaited = !dereg.isDone();
        go.countDown();
        ErrnoException reregFailure = outcome(rereg);
        ErrnoException deregFailure = outcome(dereg);
        ctx.close();

        assertEquals(pins, f.machine.memory().pinsOutstanding(), "nothing stays pinned after ibv_close_device");
        assertEquals(mappings, f.machine.activeDmaMappings(hca), "nothing stays mapped after ibv_close_device");
        assertTrue(f.machine.dmaDebug().reports().isEmpty(), "dma-debug: " + f.machine.dmaDebug().reports());
        assertTrue(deregWaited, "the deregistration waited for the re-registration in progress");
        assertNull(reregFailure, "the re-registration came first and completed");
        assertNull(deregFailure, "the deregistration came second and completed");
        assertTrue(mr.isDestroyed());
    }

    @Test
    void aReregistrationAfterADeregistrationFailsAndTakesNothing() {
        VerbsContext ctx = f.open();
        ProtectionDomain pd = ctx.allocPd();
        long a = f.alloc(2 * PAGE);
        MrImpl mr = (MrImpl) pd.regMr(a, 2 * PAGE, Access.LOCAL_WRITE);
        long pins = f.machine.memory().pinsOutstanding();
        mr.destroy();
        long after = f.machine.memory().pinsOutstanding();
        assertEquals(pins - 2, after);
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> mr.rereg(ReregFlags.CHANGE_TRANSLATION, null, a, PAGE, 0));
        assertEquals(Errno.EINVAL, e.errno());
        assertEquals(after, f.machine.memory().pinsOutstanding(), "the refused rereg pinned nothing");
    }

    /** What {@code call} threw as an errno, null if it returned. */
    private static ErrnoException outcome(Blocked.Call<Void> call) throws InterruptedException {
        try {
            call.get();
            return null;
        } catch (ExecutionException e) {
            if (e.getCause() instanceof ErrnoException x) {
                return x;
            }
            throw new AssertionError("unexpected failure of " + call.thread().getName(), e.getCause());
        }
    }

    /**
     * Waits, at most {@link Blocked#TIMEOUT}, until {@code call} has finished or is parked or blocked with
     * {@code frame} on its stack (with the fix it blocks there; without it, it finishes at once).
     */
    private static void awaitDoneOrBlockedIn(Blocked.Call<?> call, String frame) {
        Thread t = call.thread();
        Eventually.eventually(() -> {
            if (call.isDone()) {
                return true;
            }
            Thread.State s = t.getState();
            boolean waiting = s == Thread.State.BLOCKED || s == Thread.State.WAITING;
            return waiting && Arrays.stream(t.getStackTrace()).anyMatch(e -> frame.equals(e.getClassName() + "." + e.getMethodName()))
                    && t.getState() == s;
        }, Blocked.TIMEOUT, t.getName() + " neither finished nor blocked in " + frame);
    }
}
