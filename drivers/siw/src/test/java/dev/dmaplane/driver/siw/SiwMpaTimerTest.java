package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.DataInputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * siw's MPA timers ({@code drivers/infiniband/sw/siw/siw_cm.c}, {@code siw_cm.h}): {@code siw_accept_newconn}
 * queues {@code SIW_CM_WORK_MPATIMEOUT} for a new passive endpoint in {@code SIW_EPSTATE_AWAIT_MPAREQ}
 * ({@code MPAREP_TIMEOUT}, 5 s), {@code siw_connect} for the active one in {@code SIW_EPSTATE_AWAIT_MPAREP} once its
 * request left ({@code MPAREQ_TIMEOUT}, 10 s). When the work runs, {@code siw_cm_work_handler} releases a responder
 * still waiting for the request without telling anyone, and reports CONNECT_REPLY with {@code -ETIMEDOUT} for an
 * initiator still waiting for the reply (its partial private data hidden) before releasing it: the socket closed and
 * the QP to ERR ({@code siw_qp_llp_close}). A passive endpoint that reported its request ({@code RECVD_MPAREQ}) is
 * left alone by the timer: the consumer's answer has none. {@code siw_proc_mpareply} and the release cancel the
 * timer ({@code siw_cancel_mpatimer}). The durations are set short per device here; Linux's are the defaults.
 */
@Timeout(60)
class SiwMpaTimerTest {
    private static final Duration SHORT = Duration.ofSeconds(1);

    private final SiwHosts h = new SiwHosts(73, 74);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive, listener or MPA timer thread left");
    }

    private SiwProvider pa() {
        return h.da.providers.get("siw0");
    }

    private SiwProvider pb() {
        return h.db.providers.get("siw0");
    }

    private static long threadsOf(String prefix) {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith(prefix) && t.isAlive()).count();
    }

    /** The stream {@code s} reads: its end of stream once siw closed its side, within {@link SiwHosts#WAIT}. */
    private static void endsWithoutAWord(Socket s) throws IOException {
        s.setSoTimeout((int) SiwHosts.WAIT.toMillis());
        assertEquals(-1, s.getInputStream().read(), "siw closed the stream, sending nothing");
    }

    /**
     * {@code siw_cm_work_handler}, {@code SIW_CM_WORK_MPATIMEOUT} in {@code SIW_EPSTATE_AWAIT_MPAREQ}: TCP peers of a
     * listener, one that never sends its MPA request and one that stops after 10 bytes of it, are dropped once
     * {@code MPAREP_TIMEOUT} (here 1 s) passed: their streams end, no CONNECT_REQUEST is reported, no endpoint
     * thread or timer stays, and the listener takes the next connection.
     */
    @Test
    void aTcpPeerThatNeverSendsItsRequestIsDropped() throws Exception {
        pb().mpaTimeouts(SHORT, MpaTimers.MPAREQ_TIMEOUT);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 4, h.b.events::add);
             Socket silent = new Socket(); Socket partial = new Socket()) {
            silent.connect(l.local());
            partial.connect(l.local());
            partial.getOutputStream().write(Arrays.copyOf(Mpa.REQ_KEY, 10));
            endsWithoutAWord(silent);
            endsWithoutAWord(partial);
            eventually(() -> threadsOf("siw-rx-siw0-p") == 0, SiwHosts.WAIT, "the passive endpoints' threads ended");
            assertNull(h.b.events.peek(), "nobody is told");
            assertEquals(0, pb().mpaTimers.queued(), "no timer left");

            pb().mpaTimeouts(MpaTimers.MPAREP_TIMEOUT, MpaTimers.MPAREQ_TIMEOUT); // Linux's again, for a loaded machine
            QueuePair qa = h.a.rc();
            QueuePair qb = h.b.rc();
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(null, 1, 1), h.a.events::add);
            IwCmEvent req = SiwHosts.expect(h.b.event(), IwCmEvent.Type.CONNECT_REQUEST);
            req.request().accept(qb.qpNum(), new IwConnParam(null, 1, 1), h.b.events::add);
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
        }
    }

    /**
     * {@code SIW_CM_WORK_MPATIMEOUT} in {@code SIW_EPSTATE_AWAIT_MPAREP}: a raw responder reads the request and sends
     * a reply header announcing 8 bytes of private data and 3 of them, then nothing. After {@code MPAREQ_TIMEOUT}
     * (here 1 s) the initiator reports CONNECT_REPLY with {@code -ETIMEDOUT}, no private data ("hide any partially
     * received private data") and its own ORD and IRD; its QP is in ERR, the responder reads the end of the stream,
     * and no endpoint thread or timer stays.
     */
    @Test
    void aResponderThatNeverCompletesItsReplyTimesTheInitiatorOut() throws Exception {
        pa().mpaTimeouts(MpaTimers.MPAREP_TIMEOUT, SHORT);
        QueuePair qa = h.a.rc();
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address)) {
            h.a.cm.connect(qa.qpNum(), (InetSocketAddress) server.getLocalSocketAddress(),
                    new IwConnParam(new byte[]{7}, 3, 5), h.a.events::add);
            try (Socket s = server.accept()) {
                s.setSoTimeout((int) SiwHosts.WAIT.toMillis());
                new DataInputStream(s.getInputStream()).readFully(new byte[Mpa.RR_HDR + Mpa.V2_DATA + 1]);
                byte[] reply = Mpa.frame(true, false, Mpa.REVISION_2, new Mpa.V2(5, 3, false, 0), new byte[4]);
                s.getOutputStream().write(Arrays.copyOf(reply, Mpa.RR_HDR + 3));

                IwCmEvent e = h.a.event();
                assertEquals(List.of(IwCmEvent.Type.CONNECT_REPLY, Errno.ETIMEDOUT, 3, 5),
                        List.of(e.type(), e.status(), e.ord(), e.ird()));
                assertArrayEquals(new byte[0], e.privateData(), "the partial private data hidden");
                assertEquals(QpState.ERR, qa.query().qpState(), "the release moved the QP to ERR");
                endsWithoutAWord(s);
            }
        }
        eventually(() -> threadsOf("siw-rx-siw0-a") == 0, SiwHosts.WAIT, "the active endpoint's thread ended");
        assertNull(h.a.events.peek(), "nothing after CONNECT_REPLY");
        assertEquals(0, pa().mpaTimers.queued(), "no timer left");
    }

    /**
     * A siw responder whose consumer never answers the request: the initiator's {@code MPAREQ_TIMEOUT} (3 s) ends
     * the attempt with CONNECT_REPLY {@code -ETIMEDOUT}, its QP in ERR. The responder's own timer (1 s) does
     * nothing once the request was reported ({@code SIW_EPSTATE_RECVD_MPAREQ} is neither state the MPATIMEOUT work
     * acts on): had it closed the stream, the initiator would have seen it end first and reported {@code -ECONNRESET}
     * ({@code SIW_CM_WORK_PEER_CLOSE} in {@code AWAIT_MPAREP}). The responder sees the initiator's stream end
     * (PEER_CLOSE in {@code RECVD_MPAREQ}: released), so the late accept is ECONNRESET ({@code siw_accept}: out of
     * state) and its QP stays as it was.
     */
    @Test
    void aConsumerThatNeverAnswersTimesTheInitiatorOutButNotTheResponder() throws Exception {
        pa().mpaTimeouts(MpaTimers.MPAREP_TIMEOUT, Duration.ofSeconds(3));
        pb().mpaTimeouts(Duration.ofSeconds(1), MpaTimers.MPAREQ_TIMEOUT);
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 4, h.b.events::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(null, 2, 2), h.a.events::add);
            IwCmEvent req = SiwHosts.expect(h.b.event(), IwCmEvent.Type.CONNECT_REQUEST);

            IwCmEvent e = h.a.event();
            assertEquals(List.of(IwCmEvent.Type.CONNECT_REPLY, Errno.ETIMEDOUT), List.of(e.type(), e.status()));
            assertEquals(QpState.ERR, qa.query().qpState());

            eventually(() -> threadsOf("siw-rx-siw0-p") == 0, SiwHosts.WAIT, "the responder released its endpoint");
            ErrnoException x = assertThrows(ErrnoException.class,
                    () -> req.request().accept(qb.qpNum(), new IwConnParam(null, 2, 2), h.b.events::add));
            assertEquals(Errno.ECONNRESET, x.errno());
            assertEquals(QpState.INIT, qb.query().qpState(), "the responder's QP untouched (IDLE)");
            assertNull(h.b.events.peek(), "nothing reported at the responder");
        }
    }

    /**
     * {@code siw_proc_mpareply} cancels the initiator's timer once the reply is in, and the responder's is cancelled
     * once its request is (here, by this driver; Linux's would run and find {@code RECVD_MPAREQ}): a connection made
     * with both timers at 2 s leaves none queued, and a duration that is not positive is EINVAL.
     */
    @Test
    void aConnectionMadeLeavesNoTimer() {
        Duration d = Duration.ofSeconds(2);
        pa().mpaTimeouts(d, d);
        pb().mpaTimeouts(d, d);
        QueuePair[] p = h.pair();
        assertEquals(List.of(QpState.RTS, QpState.RTS), List.of(p[0].query().qpState(), p[1].query().qpState()));
        assertEquals(List.of(0, 0), List.of(pa().mpaTimers.queued(), pb().mpaTimers.queued()));
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> pa().mpaTimeouts(Duration.ZERO, SHORT)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> pa().mpaTimeouts(SHORT, Duration.ofMillis(-1))).errno());
    }
}
