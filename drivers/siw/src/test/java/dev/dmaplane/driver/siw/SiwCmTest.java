package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.DataInputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The connection manager's verbs ({@code include/rdma/iw_cm.h} {@code struct iw_cm_verbs}, {@code siw_cm.c};
 * MPA start-up of RFC 5044 section 7): private data in the MPA request and reply, a reject with its private data
 * reaching the active side as {@code siw_proc_mpareply} reports it (CONNECT_REPLY {@code -ECONNRESET}, the QP in ERR
 * after {@code siw_cm_work_handler}'s release), a refused TCP connection (the caller's error, as {@code siw_connect}
 * returns it), and the arguments refused before anything is sent.
 */
@Timeout(60)
class SiwCmTest {
    private final SiwHosts h = new SiwHosts(37, 38);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    @Test
    void privateDataTravelsInTheMpaRequestAndReply() {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(new byte[]{9, 8, 7}, 4, 4), h.a.events::add);
            IwCmEvent req = h.b.event();
            assertEquals(IwCmEvent.Type.CONNECT_REQUEST, req.type());
            assertArrayEquals(new byte[]{9, 8, 7}, req.privateData());
            assertEquals(l.local(), req.local());
            req.request().accept(qb.qpNum(), new IwConnParam(new byte[]{6, 5}, 4, 4), h.b.events::add);
            ErrnoException twice = assertThrows(ErrnoException.class,
                    () -> req.request().accept(qb.qpNum(), new IwConnParam(null, 4, 4), h.b.events::add));
            assertEquals(Errno.EINVAL, twice.errno());
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            IwCmEvent rep = SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
            assertArrayEquals(new byte[]{6, 5}, rep.privateData());
        }
        assertEquals(QpState.RTS, qa.query().qpState());
        ErrnoException again = assertThrows(ErrnoException.class, () -> h.a.cm.connect(qa.qpNum(),
                new InetSocketAddress(h.b.address, 1), new IwConnParam(null, 1, 1), h.a.events::add));
        assertEquals(Errno.EINVAL, again.errno(), "connected already");
    }

    /**
     * A reject as {@code siw_proc_mpareply} reports it (Linux {@code drivers/infiniband/sw/siw/siw_cm.c}): the reply
     * with the reject bit is CONNECT_REPLY {@code -ECONNRESET} with the peer's private data, and the endpoint's
     * release in {@code siw_cm_work_handler} moves the QP to ERR ({@code siw_qp_llp_close}). The QP cannot connect
     * again; a new QP can.
     */
    @Test
    void aRejectReachesTheActiveSideWithItsPrivateDataAndANewQpMayTryAgain() {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 2, h.b.events::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(new byte[]{1}, 1, 1), h.a.events::add);
            h.b.event().request().reject(new byte[]{42});
            IwCmEvent rep = h.a.event();
            assertEquals(IwCmEvent.Type.CONNECT_REPLY, rep.type());
            assertEquals(Errno.ECONNRESET, rep.status());
            assertArrayEquals(new byte[]{42}, rep.privateData());
            assertEquals(QpState.ERR, qa.query().qpState(), "the release moves the QP of a rejected connect to ERR");
            ErrnoException again = assertThrows(ErrnoException.class, () -> h.a.cm.connect(qa.qpNum(), l.local(),
                    new IwConnParam(null, 1, 1), h.a.events::add));
            assertEquals(Errno.EINVAL, again.errno(), "a QP in ERR cannot connect");

            QueuePair qa2 = h.a.rc();
            h.a.cm.connect(qa2.qpNum(), l.local(), new IwConnParam(null, 1, 1), h.a.events::add);
            h.b.event().request().accept(qb.qpNum(), new IwConnParam(null, 1, 1), h.b.events::add);
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            assertEquals(QpState.RTS, qa2.query().qpState());
        }
        assertEquals(QpState.ERR, qa.query().qpState());
        assertEquals(QpState.RTS, qb.query().qpState());
    }

    /**
     * The reject is reported after the endpoint let go of the QP and moved it to ERR ({@code siw_cm_work_handler}
     * releases it after {@code siw_proc_mpareply}'s upcall; here the order is such that the handler sees the end
     * state): the handler sees ERR and may connect a new QP from the event itself, on the endpoint's thread.
     */
    @Test
    void aNewQpMayConnectFromTheRejectingReplyItself() throws InterruptedException {
        QueuePair qa = h.a.rc();
        QueuePair qa2 = h.a.rc();
        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 2, h.b.events::add)) {
            AtomicReference<Object> retry = new AtomicReference<>();
            AtomicReference<QpState> seen = new AtomicReference<>();
            CountDownLatch replied = new CountDownLatch(1);
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(null, 1, 1), e -> {
                if (e.type() == IwCmEvent.Type.CONNECT_REPLY && e.status() == Errno.ECONNRESET) {
                    seen.set(qa.query().qpState());
                    try {
                        h.a.cm.connect(qa2.qpNum(), l.local(), new IwConnParam(null, 1, 1), h.a.events::add);
                        retry.set("connecting");
                    } catch (ErrnoException x) {
                        retry.set(x);
                    }
                    replied.countDown();
                }
            });
            h.b.event().request().reject(null);
            assertTrue(replied.await(SiwHosts.WAIT.toSeconds(), TimeUnit.SECONDS), "the reject was reported");
            assertEquals(QpState.ERR, seen.get(), "the QP was in ERR when the reject was reported");
            assertEquals("connecting", retry.get());
            h.b.event().request().accept(qb.qpNum(), new IwConnParam(null, 1, 1), h.b.events::add);
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
        }
        assertEquals(QpState.RTS, qa2.query().qpState());
    }

    /**
     * {@code siw_connect} (Linux {@code drivers/infiniband/sw/siw/siw_cm.c}) connects its socket in blocking mode
     * ({@code kernel_bindconnect}) and returns the error to {@code iw_cm_connect} ({@code iwcm.c}), which returns it
     * to its caller: {@code -ECONNREFUSED} at once, no CONNECT_REPLY, the QP untouched and free to connect again
     * once somebody listens.
     */
    @Test
    void aConnectNobodyListensForFailsAtOnceAndLeavesTheQpAsItWas() throws Exception {
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, h.b.address)) {
            port = s.getLocalPort();
        }
        QueuePair qa = h.a.rc();
        InetSocketAddress to = new InetSocketAddress(h.b.address, port);
        ErrnoException e = assertThrows(ErrnoException.class, () -> h.a.cm.connect(qa.qpNum(), to,
                new IwConnParam(null, 1, 1), h.a.events::add));
        assertEquals(Errno.ECONNREFUSED, e.errno());
        assertTrue(e.getMessage().contains(to.toString()), e.getMessage());
        assertNull(h.a.events.peek(), "no event: the caller got the error");
        assertEquals(QpState.INIT, qa.query().qpState(), "IDLE as before, INIT to siw_query_qp");

        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(to, 1, h.b.events::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(null, 1, 1), h.a.events::add);
            h.b.event().request().accept(qb.qpNum(), new IwConnParam(null, 1, 1), h.b.events::add);
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
        }
        assertEquals(QpState.RTS, qa.query().qpState(), "the same QP connected once somebody listened");
    }

    /**
     * {@code siw_connect}: an IRD above {@code sdev->attrs.max_ird} or an ORD above {@code max_ord} (128) is
     * {@code -ENOMEM}, returned before a socket is created: the QP stays as it was and unbound (it connects right
     * after), no event comes, and the first connection the server sees is that later one.
     */
    @Test
    void connectDepthsAboveTheDevicesAreEnomemBeforeAnySocket() throws Exception {
        QueuePair qa = h.a.rc();
        try (ServerSocket server = new ServerSocket(0, 4, h.b.address)) {
            InetSocketAddress to = (InetSocketAddress) server.getLocalSocketAddress();
            ErrnoException ird = assertThrows(ErrnoException.class, () -> h.a.cm.connect(qa.qpNum(), to,
                    new IwConnParam(null, 1, 129), h.a.events::add));
            assertEquals(Errno.ENOMEM, ird.errno());
            assertTrue(ird.getMessage().contains("129"), ird.getMessage());
            assertEquals(Errno.ENOMEM, assertThrows(ErrnoException.class, () -> h.a.cm.connect(qa.qpNum(), to,
                    new IwConnParam(null, 129, 1), h.a.events::add)).errno(), "ORD 129");
            assertEquals(QpState.INIT, qa.query().qpState(), "untouched: IDLE, INIT to siw_query_qp");
            assertNull(h.a.events.peek(), "no event: the caller got the error");

            h.a.cm.connect(qa.qpNum(), to, new IwConnParam(null, 128, 128), h.a.events::add);
            try (Socket s = server.accept()) {
                s.setSoTimeout(10_000);
                byte[] req = new byte[Mpa.RR_HDR + Mpa.V2_DATA];
                new DataInputStream(s.getInputStream()).readFully(req);
                ByteBuffer b = ByteBuffer.wrap(req);
                assertEquals(List.of(128, 128), List.of(b.getShort(Mpa.RR_HDR) & Mpa.V2_IRD_ORD_MASK,
                        b.getShort(Mpa.RR_HDR + 2) & Mpa.V2_IRD_ORD_MASK), "the first connection is the good one");
            }
            assertReset(h.a.event());
        }
    }

    /**
     * {@code siw_accept}: an ORD above {@code sdev->attrs.max_ord} or an IRD above {@code max_ird} is {@code -EINVAL}
     * through its {@code error:} path, which releases the socket: the request is answered (a second accept is EINVAL),
     * the responder's QP is never bound (it stays as it was and takes the next connection), nothing is reported at
     * the responder, and the initiator sees its stream end while it waits for the reply ({@code siw_cm_work_handler}'s
     * PEER_CLOSE in AWAIT_MPAREP: CONNECT_REPLY {@code -ECONNRESET}, its QP in ERR).
     */
    @Test
    void acceptDepthsAboveTheDevicesAreEinvalAndEndTheConnection() {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(null, 4, 4), h.a.events::add);
            IwCmEvent req = h.b.event();
            ErrnoException e = assertThrows(ErrnoException.class, () -> req.request().accept(qb.qpNum(),
                    new IwConnParam(null, 129, 4), h.b.events::add));
            assertEquals(Errno.EINVAL, e.errno());
            assertTrue(e.getMessage().contains("129"), e.getMessage());
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> req.request().accept(qb.qpNum(),
                    new IwConnParam(null, 4, 4), h.b.events::add)).errno(), "answered already");
            assertReset(h.a.event());
            assertEquals(QpState.ERR, qa.query().qpState());
            assertEquals(QpState.INIT, qb.query().qpState(), "never bound: IDLE, INIT to siw_query_qp");
            assertNull(h.b.events.peek(), "nothing reported at the responder");

            QueuePair qa2 = h.a.rc();
            h.a.cm.connect(qa2.qpNum(), l.local(), new IwConnParam(null, 4, 4), h.a.events::add);
            IwCmEvent again = h.b.event();
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> again.request().accept(qb.qpNum(),
                    new IwConnParam(null, 4, 129), h.b.events::add)).errno(), "IRD 129");
            assertReset(h.a.event());

            QueuePair qa3 = h.a.rc();
            h.a.cm.connect(qa3.qpNum(), l.local(), new IwConnParam(null, 4, 4), h.a.events::add);
            h.b.event().request().accept(qb.qpNum(), new IwConnParam(null, 128, 128), h.b.events::add);
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
            assertEquals(QpState.RTS, qb.query().qpState(), "the same QP took the next connection");
        }
    }

    /**
     * {@code siw_accept} looks the QP up ({@code siw_qp_id2obj}) before anything else: a QP that does not exist is
     * {@code -EINVAL} even with an ORD above the device's, returned before the function's error path, so the socket
     * stays and the request waits to be answered (here by a QP that exists).
     */
    @Test
    void aMissingQpIsEinvalBeforeTheDepthsAndTheRequestStays() {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(null, 4, 4), h.a.events::add);
            IwCmEvent req = h.b.event();
            ErrnoException e = assertThrows(ErrnoException.class, () -> req.request().accept(0xabcdef,
                    new IwConnParam(null, 129, 4), h.b.events::add));
            assertEquals(Errno.EINVAL, e.errno());
            assertTrue(e.getMessage().contains("no qp " + 0xabcdef), e.getMessage());
            req.request().accept(qb.qpNum(), new IwConnParam(null, 4, 4), h.b.events::add);
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            assertNull(SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY).status());
            assertEquals(QpState.RTS, qb.query().qpState());
        }
    }

    /**
     * {@code siw_accept}'s state check: a QP past RTR ({@code qp->attrs.state > SIW_QP_STATE_RTR}) is
     * {@code -EINVAL} through the error path, which releases the socket: the request is answered and the initiator
     * sees its stream end (CONNECT_REPLY {@code -ECONNRESET}).
     */
    @Test
    void aQpPastRtrIsEinvalAndEndsTheConnection() {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        qb.modify(QpAttr.builder().state(QpState.ERR).build());
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(null, 4, 4), h.a.events::add);
            IwCmEvent req = h.b.event();
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> req.request().accept(qb.qpNum(),
                    new IwConnParam(null, 4, 4), h.b.events::add)).errno());
            assertReset(h.a.event());
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> req.request().reject(null)).errno(),
                    "answered already");
            assertNull(h.b.events.peek(), "nothing reported at the responder");
        }
    }

    private static void assertReset(IwCmEvent e) {
        assertEquals(List.of(IwCmEvent.Type.CONNECT_REPLY, Errno.ECONNRESET), Arrays.asList(e.type(), e.status()));
    }

    @Test
    void badArgumentsAreRefusedBeforeAnythingIsSent() throws Exception {
        // a siw QP is never in RESET (siw_create_qp leaves it IDLE, INIT to a query); one in ERROR, which is final
        // (siw_qp_modify), is refused as siw_accept refuses a QP beyond RTR
        QueuePair failed = h.a.pd.createQp(new QpInitAttr(h.a.cq, h.a.cq, null, new QpCap(4, 4, 1, 1, 0), QpType.RC,
                false));
        failed.modify(QpAttr.builder().state(QpState.ERR).build());
        InetSocketAddress to = new InetSocketAddress(h.b.address, 1);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> h.a.cm.connect(failed.qpNum(), to,
                new IwConnParam(null, 1, 1), h.a.events::add)).errno(), "a QP in ERR");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> h.a.cm.connect(0xabcdef, to,
                new IwConnParam(null, 1, 1), h.a.events::add)).errno(), "no such QP");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> new IwConnParam(new byte[513], 1, 1)).errno(), "MPA private data over 512 bytes");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> h.a.cm.listen(
                new InetSocketAddress(h.a.address, 0), 0, h.a.events::add)).errno(), "backlog 0");
        try (IwListen l = h.a.cm.listen(new InetSocketAddress(h.a.address, 0), 1, h.a.events::add)) {
            assertEquals(Errno.EADDRINUSE, assertThrows(ErrnoException.class,
                    () -> h.a.cm.listen(l.local(), 1, h.a.events::add)).errno());
        }
        assertNull(h.a.events.peek());
    }

    /**
     * {@code siw_accept} and {@code siw_reject} ({@code siw_cm.c}) answer a request whose initiator closed its stream
     * while it waited ({@code siw_cm_work_handler}'s PEER_CLOSE left the endpoint CLOSED, telling nobody) with
     * ECONNRESET, before the QP is looked at: the QP is left as it was (IDLE, INIT to a query) and takes the next
     * connection. The failure answers the request ({@code iw_cm_accept} leaves CONN_RECV), so a second answer is
     * EINVAL, as for a request answered twice.
     */
    @Test
    void anAnswerToARequestWhosePeerWentAwayIsEconnreset() throws Exception {
        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 2, h.b.events::add)) {
            for (boolean accept : List.of(true, false)) {
                IwCmEvent req;
                try (Socket s = new Socket()) {
                    s.connect(l.local(), 10_000);
                    s.getOutputStream().write(Mpa.frame(false, false, Mpa.REVISION_2, new Mpa.V2(4, 4, false, 0),
                            new byte[]{5}));
                    req = SiwHosts.expect(h.b.event(), IwCmEvent.Type.CONNECT_REQUEST);
                }
                eventually(() -> passiveEndpoints() == 0, SiwHosts.WAIT, "the endpoint saw its peer close");
                ErrnoException e = assertThrows(ErrnoException.class, accept
                        ? () -> req.request().accept(qb.qpNum(), new IwConnParam(null, 4, 4), h.b.events::add)
                        : () -> req.request().reject(new byte[]{1}));
                assertEquals(Errno.ECONNRESET, e.errno(), e.getMessage());
                assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> req.request().accept(qb.qpNum(),
                        new IwConnParam(null, 4, 4), h.b.events::add)).errno(), "answered by the failure");
                assertEquals(QpState.INIT, qb.query().qpState(), "untouched: IDLE, INIT to siw_query_qp");
                assertNull(h.b.events.peek(), "nobody was told");
            }
        }
        QueuePair qa = h.a.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(new byte[0], 4, 4), h.a.events::add);
            IwCmEvent req = SiwHosts.expect(h.b.event(), IwCmEvent.Type.CONNECT_REQUEST);
            req.request().accept(qb.qpNum(), new IwConnParam(null, 4, 4), h.b.events::add);
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
            assertEquals(QpState.RTS, qb.query().qpState(), "the same QP took the next connection");
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> req.request().accept(qb.qpNum(),
                    new IwConnParam(null, 4, 4), h.b.events::add)).errno(), "a request answered twice stays EINVAL");
        }
    }

    /** The passive endpoints' threads alive ({@code siw-rx-<dev>-p<n>}): one per request not yet ended. */
    private static long passiveEndpoints() {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith("siw-rx-") && t.getName().contains("-p") && t.isAlive()).count();
    }
}
