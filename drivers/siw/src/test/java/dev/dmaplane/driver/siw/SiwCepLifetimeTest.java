package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwConnection;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.Blocked;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A connection endpoint's life as {@code siw_cm.c} keeps it: {@code siw_cep_alloc} puts every endpoint on the
 * device's {@code cep_list} and only {@code __siw_cep_dealloc} takes it off, when the last reference is gone, not
 * when the connection ends; so device removal waits for an endpoint whose thread still reports the end of its
 * connection. And a QP that {@code siw_qp_modify} moves to RTS gets its socket under the same {@code state_lock}: a
 * send posted the moment the QP is in RTS is sent, whichever side of the connection it is on.
 */
@Timeout(120)
class SiwCepLifetimeTest {
    private static final int ROUNDS = 40;

    private final SiwHosts h = new SiwHosts(41, 42);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /**
     * The passive side's thread reports the end of a connection the peer closed (DISCONNECT, CLOSE) and its handler
     * is still busy with CLOSE: removing the device waits for that thread, and no thread of the device is left when
     * it returns.
     */
    @Test
    void deviceRemovalWaitsForAnEndpointStillReportingItsEnd() throws Exception {
        CountDownLatch inClose = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        IwConnection ca;
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add)) {
            ca = h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(null, 1, 1), h.a.events::add);
            IwCmEvent req = SiwHosts.expect(h.b.event(), IwCmEvent.Type.CONNECT_REQUEST);
            req.request().accept(qb.qpNum(), new IwConnParam(null, 1, 1), e -> {
                if (e.type() == IwCmEvent.Type.CLOSE) {
                    inClose.countDown();
                    try {
                        release.await();
                    } catch (InterruptedException x) {
                        Thread.currentThread().interrupt();
                    }
                }
            });
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
        }
        Blocked.Call<Void> removal;
        try {
            ca.disconnect();
            assertTrue(inClose.await(SiwHosts.WAIT.toSeconds(), TimeUnit.SECONDS), "b reports CLOSE");
            removal = Blocked.run("remove-siw-b", () -> h.mb.devices().unregisterDriver(h.db));
            removal.awaitBlockedIn("dev.dmaplane.driver.siw.Cep.join", "dev.dmaplane.driver.siw.SiwProvider.stop");
            assertFalse(removal.isDone(), "removal waits for the endpoint's thread");
        } finally {
            release.countDown();
        }
        removal.get();
        assertEquals(0, threadsOf("siw-rx-siw0-p"), "the passive endpoint's thread ended before removal returned");
    }

    private static long threadsOf(String prefix) {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith(prefix) && t.isAlive()).count();
    }

    /**
     * A SEND posted by another thread the moment the passive QP is in RTS (the accept's {@code establish()}) is
     * sent: repeated connections, each with a poster spinning on the QP while the accept runs.
     */
    @Test
    void aSendPostedTheMomentTheResponderIsInRtsIsSent() throws Exception {
        for (int i = 0; i < ROUNDS; i++) {
            round(i, false);
        }
    }

    /** The same on the active side: the poster spins while the MPA reply moves the initiator's QP to RTS. */
    @Test
    void aSendPostedTheMomentTheInitiatorIsInRtsIsSent() throws Exception {
        for (int i = 0; i < ROUNDS; i++) {
            round(i, true);
        }
    }

    /** One connection a → b; the initiator's QP ({@code fromInitiator}) or the responder's posts at RTS. */
    private void round(long i, boolean fromInitiator) throws Exception {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        SiwHosts.Host from = fromInitiator ? h.a : h.b;
        SiwHosts.Host to = fromInitiator ? h.b : h.a;
        QueuePair sender = fromInitiator ? qa : qb;
        (fromInitiator ? qb : qa).postRecv(List.of(RecvWr.of(i, to.sge(0, 64))));
        LinkedBlockingQueue<IwCmEvent> ea = new LinkedBlockingQueue<>();
        LinkedBlockingQueue<IwCmEvent> eb = new LinkedBlockingQueue<>();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, eb::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(null, 1, 1), ea::add);
            IwCmEvent req = SiwHosts.expect(next(eb), IwCmEvent.Type.CONNECT_REQUEST);
            Blocked.Call<Void> poster = Blocked.run("poster", () -> postAtRts(sender, from, i));
            req.request().accept(qb.qpNum(), new IwConnParam(null, 1, 1), eb::add);
            poster.get();
            SiwHosts.expect(next(eb), IwCmEvent.Type.ESTABLISHED);
            SiwHosts.expect(next(ea), IwCmEvent.Type.CONNECT_REPLY);
        }
        WorkCompletion sent = SiwHosts.one(from.cq);
        WorkCompletion got = SiwHosts.one(to.cq);
        assertEquals(List.of(WcStatus.SUCCESS, WcStatus.SUCCESS, i, i),
                List.of(sent.status(), got.status(), sent.wrId(), got.wrId()), "round " + i);
        qa.destroy();
        qb.destroy();
    }

    private static IwCmEvent next(LinkedBlockingQueue<IwCmEvent> q) throws InterruptedException {
        IwCmEvent e = q.poll(SiwHosts.WAIT.toMillis(), TimeUnit.MILLISECONDS);
        if (e == null) {
            throw new AssertionError("no CM event within " + SiwHosts.WAIT);
        }
        return e;
    }

    /** Posts a SEND on {@code q} as soon as a post is taken (sends need RTS: EINVAL before), within a bound. */
    private static void postAtRts(QueuePair q, SiwHosts.Host on, long wrId) {
        List<SendWr> send = List.of(new SendWr.Send(wrId, List.of(on.sge(4096, 8)), SIGNALED, null));
        long deadline = System.nanoTime() + SiwHosts.WAIT.toNanos();
        while (System.nanoTime() < deadline) {
            try {
                q.postSend(send);
                return;
            } catch (ErrnoException e) {
                Thread.onSpinWait();
            }
        }
        throw new AssertionError("qp " + q.qpNum() + " never took a send");
    }
}
