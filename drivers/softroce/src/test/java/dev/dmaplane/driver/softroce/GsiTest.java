package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.mad.Mad;
import dev.dmaplane.rdma.mad.MadAddress;
import dev.dmaplane.rdma.mad.MadAgent;
import dev.dmaplane.rdma.mad.MadHandler;
import dev.dmaplane.rdma.mad.MadSendBuf;
import dev.dmaplane.rdma.mad.MadSendStatus;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.AddressHandle;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.UdDestination;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * QP1, the GSI, and the MAD layer over it ({@code drivers/infiniband/core/mad.c}: {@code ib_register_mad_agent},
 * {@code ib_post_send_mad} with {@code timeout_ms} and {@code retries}, {@code find_send_wr} matching a response by
 * its TID; {@code rxe_recv.c}'s {@code check_keys} with {@code GSI_QKEY} for QP 1; the common MAD header of IBTA
 * 13.4.3): a request crosses rxe0 → rxe1 as a 256-byte UD datagram and its response completes the send; an
 * unanswered request is sent 1 + retries times, then ends in TIMEOUT; a cancelled one ends CANCELED; bad
 * registrations and sends are EINVAL; a UD datagram to QP 1 with another Q_Key is dropped and counted.
 */
@Timeout(60)
class GsiTest {
    private static final int CLASS = Mad.CLASS_CM;
    private final Hcas h = new Hcas();

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith("ib_mad-") && t.isAlive()).count(), "no MAD thread left");
    }

    /** What a handler saw, in order. */
    private static final class Seen implements MadHandler {
        final BlockingQueue<Object[]> received = new LinkedBlockingQueue<>();
        final BlockingQueue<Object[]> done = new LinkedBlockingQueue<>();

        @Override
        public void received(MadAddress from, Mad mad) {
            received.add(new Object[]{from, mad});
        }

        @Override
        public void sendDone(MadSendBuf send, MadSendStatus status, Mad response) {
            done.add(new Object[]{send, status, response});
        }

        Object[] nextReceived() throws InterruptedException {
            return received.poll(10, TimeUnit.SECONDS);
        }

        Object[] nextDone() throws InterruptedException {
            return done.poll(10, TimeUnit.SECONDS);
        }
    }

    private RdmaDevice dev(String name) {
        return h.core.device(name).orElseThrow();
    }

    private static byte[] data(int seed) {
        byte[] d = new byte[Mad.DATA];
        for (int i = 0; i < d.length; i++) {
            d[i] = (byte) (seed + i);
        }
        return d;
    }

    @Test
    void aRequestCrossesAsAMadAndItsResponseCompletesTheSend() throws InterruptedException {
        Seen sa = new Seen();
        Seen sb = new Seen();
        MadAgent a = dev("rxe0").registerMadAgent(1, CLASS, 2, sa);
        MadAgent b = dev("rxe1").registerMadAgent(1, CLASS, 2, sb);
        long tid = (long) a.hiTid() << 32 | 0x1234;
        Mad req = Mad.of(CLASS, 2, Mad.METHOD_GET, tid, 0x0010, data(1));
        a.send(MadAddress.gsi(h.a.gid, h.b.gid), req, 5000, 3, null);

        Object[] r = sb.nextReceived();
        assertNotNull(r, "the request reached rxe1's agent");
        MadAddress from = (MadAddress) r[0];
        assertEquals(req, r[1], "every header field and data byte as sent");
        assertEquals(h.a.gid, from.remoteGid());
        assertEquals(h.b.gid, from.localGid());
        assertEquals(1, from.remoteQpn(), "sent from QP 1");
        assertEquals(MadAddress.GSI_QKEY, from.qkey());

        Mad resp = Mad.of(CLASS, 2, Mad.METHOD_GET | Mad.METHOD_RESP, tid, 0x0010, data(2));
        b.send(from, resp, 0, 0, null);
        Object[] d = sa.nextDone();
        assertEquals(MadSendStatus.SUCCESS, d[1]);
        assertEquals(resp, d[2], "the response with the request's TID completes it");
        assertEquals(MadSendStatus.SUCCESS, sb.nextDone()[1], "an unanswered send ends when it left");
        assertNull(sa.received.poll(), "a response is not a request for the agent");
        assertEquals(0, sb.received.size(), "the request arrived once");
    }

    /**
     * A Get or Set that no agent of rxe1 takes (a class it has no agent for, or the CM class at another version:
     * {@code find_mad_agent} matches both) is answered by rxe1's MAD layer as {@code generate_unmatched_resp} in
     * mad.c answers it: a GetResp with the request's TID, attribute, modifier and data, and status
     * UNSUPPORTED_METHOD_ATTRIB (0x000C). A Send nobody takes is dropped, so its sender times out.
     */
    @Test
    void aGetOrSetNoAgentTakesIsAnsweredUnsupported() throws InterruptedException {
        int perf = 0x04;
        Seen sa = new Seen();
        Seen sv = new Seen();
        MadAgent a = dev("rxe0").registerMadAgent(1, perf, 1, sa);
        MadAgent v1 = dev("rxe0").registerMadAgent(1, CLASS, 1, sv);
        dev("rxe1").registerMadAgent(1, CLASS, 2, new Seen());
        MadAddress to = MadAddress.gsi(h.a.gid, h.b.gid);

        long tid = (long) a.hiTid() << 32 | 0x42;
        a.send(to, new Mad(1, perf, 1, Mad.METHOD_GET, 0, 0, tid, 0x0012, 5, data(6)), 5000, 0, null);
        Object[] d = sa.nextDone();
        assertEquals(MadSendStatus.SUCCESS, d[1]);
        assertEquals(new Mad(1, perf, 1, Mad.METHOD_GET_RESP, Mad.STATUS_UNSUPPORTED_METHOD_ATTRIB, 0, tid, 0x0012, 5,
                data(6)), d[2]);

        long set = (long) v1.hiTid() << 32 | 0x43;
        v1.send(to, new Mad(1, CLASS, 1, Mad.METHOD_SET, 0, 0, set, 0x0010, 0, data(7)), 5000, 0, null);
        Object[] dv = sv.nextDone();
        assertEquals(MadSendStatus.SUCCESS, dv[1], "class version 1 has no agent on rxe1");
        assertEquals(Mad.STATUS_UNSUPPORTED_METHOD_ATTRIB, ((Mad) dv[2]).status());
        assertEquals(Mad.METHOD_GET_RESP, ((Mad) dv[2]).method());

        a.send(to, new Mad(1, perf, 1, Mad.METHOD_SEND, 0, 0, tid + 1, 0x0012, 0, data(8)), 50, 0, null);
        assertEquals(MadSendStatus.TIMEOUT, sa.nextDone()[1], "a Send nobody takes gets no answer");
    }

    @Test
    void anUnansweredRequestIsSentOncePlusRetriesTimesThenTimesOut() throws InterruptedException {
        Seen sa = new Seen();
        Seen sb = new Seen();
        MadAgent a = dev("rxe0").registerMadAgent(1, CLASS, 2, sa);
        dev("rxe1").registerMadAgent(1, CLASS, 2, sb);
        long tid = (long) a.hiTid() << 32 | 7;
        a.send(MadAddress.gsi(h.a.gid, h.b.gid), Mad.of(CLASS, 2, Mad.METHOD_SEND, tid, 0x0010, data(3)), 20, 3, null);
        Object[] d = sa.nextDone();
        assertEquals(MadSendStatus.TIMEOUT, d[1]);
        for (int i = 0; i < 4; i++) {
            assertNotNull(sb.nextReceived(), "copy " + (i + 1) + " of 4 arrived");
        }
        assertNull(sb.received.poll(200, TimeUnit.MILLISECONDS), "no fifth copy");
    }

    @Test
    void aCancelledSendEndsCanceledAndALateResponseIsDropped() throws InterruptedException {
        Seen sa = new Seen();
        Seen sb = new Seen();
        MadAgent a = dev("rxe0").registerMadAgent(1, CLASS, 2, sa);
        MadAgent b = dev("rxe1").registerMadAgent(1, CLASS, 2, sb);
        long tid = (long) a.hiTid() << 32 | 9;
        MadSendBuf sent = a.send(MadAddress.gsi(h.a.gid, h.b.gid), Mad.of(CLASS, 2, Mad.METHOD_GET, tid, 1, data(4)),
                60_000, 0, null);
        MadAddress from = (MadAddress) sb.nextReceived()[0];
        assertTrue(a.cancel(sent));
        Object[] d = sa.nextDone();
        assertEquals(MadSendStatus.CANCELED, d[1]);
        assertSame(sent, d[0], "the handle send returned");
        assertFalse(a.cancel(sent), "nothing left to cancel");
        b.send(from, Mad.of(CLASS, 2, Mad.METHOD_GET | Mad.METHOD_RESP, tid, 1, data(5)), 0, 0, null);
        assertEquals(MadSendStatus.SUCCESS, sb.nextDone()[1]);
        assertNull(sa.done.poll(200, TimeUnit.MILLISECONDS), "the late response completes nothing");
    }

    /**
     * {@code ib_modify_mad}: a send waiting with a 60 s timeout and one retry, given 50 ms instead, is sent again
     * after 50 ms and then ends in TIMEOUT (its retry waits the new timeout too); a timeout of 0 cancels a send; a
     * negative one is EINVAL; a transaction nobody waits for is false.
     */
    @Test
    void aModifiedTimeoutCountsFromNowForEachRetryAndZeroCancels() throws InterruptedException {
        Seen sa = new Seen();
        Seen sb = new Seen();
        MadAgent a = dev("rxe0").registerMadAgent(1, CLASS, 2, sa);
        dev("rxe1").registerMadAgent(1, CLASS, 2, sb);
        long tid = (long) a.hiTid() << 32 | 11;
        MadSendBuf sent = a.send(MadAddress.gsi(h.a.gid, h.b.gid),
                Mad.of(CLASS, 2, Mad.METHOD_SEND, tid, 0x0010, data(6)), 60_000, 1, null);
        assertNotNull(sb.nextReceived(), "the first copy");
        assertTrue(a.modify(sent, 50));
        assertNotNull(sb.nextReceived(), "the retry, 50 ms later rather than 60 s");
        assertEquals(MadSendStatus.TIMEOUT, sa.nextDone()[1], "and the timeout 50 ms after it");
        assertFalse(a.modify(sent, 50), "nothing waits any more");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> a.modify(sent, -1)).errno());

        long other = (long) a.hiTid() << 32 | 12;
        MadSendBuf second = a.send(MadAddress.gsi(h.a.gid, h.b.gid),
                Mad.of(CLASS, 2, Mad.METHOD_SEND, other, 0x0010, data(7)), 60_000, 0, null);
        assertTrue(a.modify(second, 0));
        assertEquals(MadSendStatus.CANCELED, sa.nextDone()[1]);
    }

    /**
     * {@code ib_post_send_mad} checks no transaction ID, and sends of one TID wait side by side, each its own
     * {@code ib_mad_send_buf}: on rxe0, agent {@code a} (class CM) sends a Get with TID T (its own hi_tid) and then a
     * Send with T (as a CM's REP carries its REQ's TID), both waiting; agent {@code p} (class 0x04) sends a Get
     * with that same T, a TID of {@code a}'s. rxe1's GetResp to T goes to {@code a} ({@code find_mad_agent} routes a
     * response by its upper 32 bits) and completes the first of its sends with T and the response's class
     * ({@code ib_find_send_mad}), with the context it was sent with; the second still waits until it is cancelled.
     * rxe1's MAD layer answers {@code p}'s Get (no agent of class 0x04 there) with a GetResp of T, which also goes
     * to {@code a}, where no send of class 0x04 waits: dropped, and {@code p}'s Get times out.
     */
    @Test
    void sendsOfOneTidWaitApartAndAResponseGoesToTheAgentItsTidNames() throws InterruptedException {
        int perf = 0x04;
        Seen sa = new Seen();
        Seen sp = new Seen();
        Seen sb = new Seen();
        MadAgent a = dev("rxe0").registerMadAgent(1, CLASS, 2, sa);
        MadAgent p = dev("rxe0").registerMadAgent(1, perf, 1, sp);
        MadAgent b = dev("rxe1").registerMadAgent(1, CLASS, 2, sb);
        MadAddress to = MadAddress.gsi(h.a.gid, h.b.gid);
        long tid = (long) a.hiTid() << 32 | 0x77;
        MadSendBuf get = a.send(to, Mad.of(CLASS, 2, Mad.METHOD_GET, tid, 0x0010, data(1)), 30_000, 0, "get");
        MadSendBuf send = a.send(to, Mad.of(CLASS, 2, Mad.METHOD_SEND, tid, 0x0013, data(2)), 60_000, 0, "send");
        MadSendBuf other = p.send(to, new Mad(1, perf, 1, Mad.METHOD_GET, 0, 0, tid, 0x0012, 0, data(3)), 200, 0,
                "perf");
        assertEquals("send", send.context());
        assertSame(a, send.agent());

        MadAddress from = (MadAddress) sb.nextReceived()[0];
        assertNotNull(sb.nextReceived(), "the Send with the same TID");
        Mad resp = Mad.of(CLASS, 2, Mad.METHOD_GET_RESP, tid, 0x0010, data(4));
        b.send(from, resp, 0, 0, null);
        Object[] d = sa.nextDone();
        assertSame(get, d[0], "the Get, sent first");
        assertEquals("get", ((MadSendBuf) d[0]).context());
        assertEquals(MadSendStatus.SUCCESS, d[1]);
        assertEquals(resp, d[2]);

        Object[] dp = sp.nextDone();
        assertSame(other, dp[0]);
        assertEquals(MadSendStatus.TIMEOUT, dp[1], "its answer went to the agent of its TID's hi_tid");
        assertNull(sa.done.poll(), "and completed nothing there");
        assertTrue(a.cancel(send), "the Send with the Get's TID still waits");
        Object[] ds = sa.nextDone();
        assertSame(send, ds[0]);
        assertEquals(MadSendStatus.CANCELED, ds[1]);
        assertFalse(p.cancel(get), "another agent's send");
        assertFalse(a.cancel(get), "answered");
    }

    /**
     * Two threads send MADs at once, rxe0 → rxe1 and rxe1 → rxe0, 2000 each: every one arrives. A sender holding the
     * MAD layer's lock while the provider waited for its engine, against a delivery holding that engine and waiting
     * for the lock, hung this within a few hundred MADs.
     */
    @Test
    void madsBothWaysAtOnceAllArrive() throws Exception {
        Seen sa = new Seen();
        Seen sb = new Seen();
        MadAgent a = dev("rxe0").registerMadAgent(1, CLASS, 2, sa);
        MadAgent b = dev("rxe1").registerMadAgent(1, CLASS, 2, sb);
        int n = 2000;
        Thread ta = Thread.ofPlatform().start(() -> {
            for (int i = 0; i < n; i++) {
                a.send(MadAddress.gsi(h.a.gid, h.b.gid), Mad.of(CLASS, 2, Mad.METHOD_SEND, (long) a.hiTid() << 32 | i,
                        1, data(i)), 0, 0, null);
            }
        });
        Thread tb = Thread.ofPlatform().start(() -> {
            for (int i = 0; i < n; i++) {
                b.send(MadAddress.gsi(h.b.gid, h.a.gid), Mad.of(CLASS, 2, Mad.METHOD_SEND, (long) b.hiTid() << 32 | i,
                        1, data(i)), 0, 0, null);
            }
        });
        ta.join(20_000);
        tb.join(20_000);
        assertFalse(ta.isAlive() || tb.isAlive(), "the senders hung");
        for (int i = 0; i < n; i++) {
            assertNotNull(sb.nextReceived(), "MAD " + i + " to rxe1");
            assertNotNull(sa.nextReceived(), "MAD " + i + " to rxe0");
        }
    }

    @Test
    void badRegistrationsAndSendsAreEinval() {
        Seen s = new Seen();
        MadAgent a = dev("rxe0").registerMadAgent(1, CLASS, 2, s);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> dev("rxe0").registerMadAgent(1, CLASS, 2, new Seen())).errno(), "class and version in use");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> dev("rxe0").registerMadAgent(2, CLASS, 2, s)).errno(), "no port 2");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> dev("rxe0").registerMadAgent(1, 0, 2, s)).errno(), "class 0");
        MadAddress to = MadAddress.gsi(h.a.gid, h.b.gid);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> a.send(to,
                Mad.of(CLASS, 2, Mad.METHOD_SEND, (long) a.hiTid() << 32, 1, data(6)), -1, 1, null)).errno(),
                "negative timeout");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> Mad.decode(new byte[255])).errno(), "a MAD has 256 bytes");
        a.unregister();
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> a.send(to,
                Mad.of(CLASS, 2, Mad.METHOD_SEND, (long) a.hiTid() << 32, 1, data(6)), 0, 0, null)).errno());
        dev("rxe0").registerMadAgent(1, CLASS, 2, s); // free again
    }

    @Test
    void aUdDatagramToQp1WithAnotherQkeyIsDroppedAndCounted() throws InterruptedException {
        Seen sb = new Seen();
        dev("rxe1").registerMadAgent(1, CLASS, 2, sb);
        QueuePair ud = h.a.pd.createQp(new QpInitAttr(h.a.cq, h.a.cq, null, new QpCap(4, 4, 1, 1, 0), QpType.UD,
                false));
        ud.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).qkey(0x1111).build());
        ud.modify(QpAttr.builder().state(QpState.RTR).build());
        ud.modify(QpAttr.builder().state(QpState.RTS).sqPsn(0).build());
        AddressHandle ah = h.a.pd.createAh(AhAttr.roce(h.b.gid, 1, 1));
        long before = dev("rxe1").hwCounters(1).get("dmaplane_drop_bad_qkey");
        ud.postSend(new SendWr.Send(1, List.of(h.a.sge(0, 256)), SIGNALED, new UdDestination(ah, 1, 0x2222)));
        assertTrue(Hcas.one(h.a.cq).isSuccess());
        assertEquals(before + 1, dev("rxe1").hwCounters(1).get("dmaplane_drop_bad_qkey"),
                "Q_Key 0x2222 is not GSI_QKEY");
        assertNull(sb.received.poll(100, TimeUnit.MILLISECONDS));
    }
}
