package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AddressHandle;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.MemoryWindow;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.MwBindInfo;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.UdDestination;
import dev.dmaplane.rdma.verbs.WcFlags;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every completion status of {@code ibv_poll_cq(3)} the wire can produce, provoked on purpose between the two HCAs
 * as rxe's requester, responder and completer produce them (NAK syndromes of IBTA 9.7.5.2, RNR and transport
 * retries), and checks that a refused remote access never touches the target's bytes.
 */
@Timeout(60)
class CompletionStatusTest {
    private final Hcas h = new Hcas();
    private static final byte[] MARK = "untouched target bytes!!".getBytes();

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    private void assertFailedThenFlushed(QueuePair qp, WcStatus status) {
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(status, wc.get(0).status(), wc.toString());
        assertEquals(1, wc.get(0).wrId());
        assertEquals(WcStatus.WR_FLUSH_ERR, wc.get(1).status(), "the QP went to ERR and flushed the rest");
        assertEquals(2, wc.get(1).wrId());
        assertEquals(QpState.ERR, qp.query().qpState());
    }

    private SendWr write(long id, int len, long remote, int rkey) {
        return new SendWr.RdmaWrite(id, List.of(h.a.sge(0, len)), SIGNALED, remote, rkey);
    }

    private SendWr follower() {
        return new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey());
    }

    @Test
    void badLocalKeyIsLocProtErr() {
        QueuePair[] p = h.pair();
        p[0].postSend(List.of(new SendWr.Send(1, List.of(new Sge(h.a.buf, 8, h.a.mr.lkey() ^ 0x55)), SIGNALED, null),
                follower()));
        assertFailedThenFlushed(p[0], WcStatus.LOC_PROT_ERR);
    }

    /** A valid lkey, but the SGE runs past the region's end (rxe's copy_data: mr_check_range fails). */
    @Test
    void aLocalSgeBeyondItsRegionIsLocProtErrAndSendsNothing() {
        var small = h.a.pd.regMr(h.a.buf, 65536, Hcas.ALL);
        h.b.write(4096, MARK);
        QueuePair[] p = h.pair();
        p[0].postSend(List.of(new SendWr.RdmaWrite(1, List.of(new Sge(h.a.buf + 65536 - 32, 64, small.lkey())), SIGNALED,
                h.b.buf + 4096, h.b.mr.rkey()), follower()));
        assertFailedThenFlushed(p[0], WcStatus.LOC_PROT_ERR);
        assertArrayEquals(MARK, h.b.read(4096, MARK.length), "nothing was sent");
    }

    /** The lkey of a region of another PD is no key for this QP (IBTA 10.6.3.2: the PDs must match). */
    @Test
    void aLocalKeyOfAnotherPdIsLocProtErr() {
        var otherPd = h.a.ctx.allocPd();
        var foreign = otherPd.regMr(h.a.buf, 65536, Hcas.ALL);
        QueuePair[] p = h.pair();
        p[0].postSend(List.of(new SendWr.Send(1, List.of(new Sge(h.a.buf, 8, foreign.lkey())), SIGNALED, null),
                follower()));
        assertFailedThenFlushed(p[0], WcStatus.LOC_PROT_ERR);
        foreign.destroy();
        otherPd.destroy();
    }

    @Test
    void noReceivePostedExhaustsTheRnrRetries() {
        QueuePair[] p = h.pair(Hcas.ALL, Hcas.ALL, 2, 7);
        p[0].postSend(List.of(new SendWr.Send(1, List.of(h.a.sge(0, 8)), SIGNALED, null), follower()));
        assertFailedThenFlushed(p[0], WcStatus.RNR_RETRY_EXC_ERR);
        assertTrue(h.driver.providers.get("rxe1").engine.counters.rnrNaksSent >= 3, "initial try and two retries were NAKed");
    }

    @Test
    void aReceivePostedDuringRnrRetriesLetsTheSendComplete() {
        QueuePair[] p = h.pair(Hcas.ALL, Hcas.ALL, 7, 7); // rnr_retry 7: retry forever
        h.a.write(0, "late receive".getBytes());
        p[0].postSend(new SendWr.Send(1, List.of(h.a.sge(0, 12)), SIGNALED, null));
        Engine responder = h.driver.providers.get("rxe1").engine;
        eventually(() -> responder.counters.rnrNaksSent >= 3, Duration.ofSeconds(5), "RNR NAKs");
        p[1].postRecv(RecvWr.of(9, h.b.sge(4096, 64)));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertEquals(9, Hcas.one(h.b.cq).wrId());
        assertArrayEquals("late receive".getBytes(), h.b.read(4096, 12));
    }

    @Test
    void aVanishedPeerExhaustsTheTransportRetries() {
        QueuePair[] p = h.pair(Hcas.ALL, Hcas.ALL, 7, 2);
        p[1].destroy();
        p[0].postSend(List.of(write(1, 8, h.b.buf, h.b.mr.rkey()), follower()));
        assertFailedThenFlushed(p[0], WcStatus.RETRY_EXC_ERR);
    }

    private void assertRemoteAccessRefused(long remote, int len, int rkey) {
        h.b.write(remote - h.b.buf, MARK);
        h.a.write(0, new byte[len]);
        QueuePair[] p = h.pair();
        p[0].postSend(List.of(write(1, len, remote, rkey), follower()));
        assertFailedThenFlushed(p[0], WcStatus.REM_ACCESS_ERR);
        assertArrayEquals(MARK, h.b.read(remote - h.b.buf, MARK.length), "the target was not touched");
        assertEquals(QpState.ERR, p[1].query().qpState(), "a remote access error is fatal to the responder too");
    }

    @Test
    void wrongRkeyIsRemAccessErrAndLeavesTheTargetAlone() {
        assertRemoteAccessRefused(h.b.buf + 8192, 64, h.b.mr.rkey() ^ 0x11);
    }

    @Test
    void writeBeyondTheRegionIsRemAccessErr() {
        assertRemoteAccessRefused(h.b.buf + Hcas.BUF - 32, 64, h.b.mr.rkey());
    }

    @Test
    void aDeregisteredRegionsRkeyIsRemAccessErr() {
        MemoryRegion gone = h.b.pd.regMr(h.b.buf, 65536, Hcas.ALL);
        int rkey = gone.rkey();
        gone.destroy();
        assertRemoteAccessRefused(h.b.buf + 4096, 64, rkey);
    }

    @Test
    void aMisalignedAtomicIsRefusedAtPostTime() {
        QueuePair[] p = h.pair();
        ErrnoException e = assertThrows(
                ErrnoException.class, () -> p[0].postSend(new SendWr.AtomicFetchAndAdd(1,
                        List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf + 4, h.b.mr.rkey(), 1)));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(h.a.cq.poll(4).isEmpty());
    }

    @Test
    void noRefusedAccessEverReachesTheIommu() {
        wrongRkeyIsRemAccessErrAndLeavesTheTargetAlone();
        assertTrue(h.machine.iommu().faults().isEmpty(), "the key checks stop bad accesses before any DMA");
    }

    @Test
    void regionOfAnotherPdIsRemAccessErr() {
        ProtectionDomain other = h.b.ctx.allocPd();
        MemoryRegion foreign = other.regMr(h.b.buf, 65536, Hcas.ALL);
        assertRemoteAccessRefused(h.b.buf + 4096, 64, foreign.rkey());
    }

    @Test
    void regionWithoutRemoteWriteIsRemAccessErr() {
        MemoryRegion ro = h.b.pd.regMr(h.b.buf, 65536, Access.LOCAL_WRITE | Access.REMOTE_READ);
        assertRemoteAccessRefused(h.b.buf + 4096, 64, ro.rkey());
    }

    @Test
    void readOfARegionWithoutRemoteReadIsRemAccessErr() {
        MemoryRegion wo = h.b.pd.regMr(h.b.buf, 65536, Access.LOCAL_WRITE | Access.REMOTE_WRITE);
        QueuePair[] p = h.pair();
        h.a.write(4096, MARK);
        p[0].postSend(List.of(new SendWr.RdmaRead(1, List.of(h.a.sge(4096, 64)), SIGNALED, h.b.buf, wo.rkey()),
                follower()));
        assertFailedThenFlushed(p[0], WcStatus.REM_ACCESS_ERR);
        assertArrayEquals(MARK, h.a.read(4096, MARK.length), "nothing was scattered locally");
    }

    @Test
    void responderQpWithoutRemoteWriteAccessIsRemInvReqErr() {
        h.b.write(4096, MARK);
        QueuePair[] p = h.pair(Hcas.ALL, Access.LOCAL_WRITE | Access.REMOTE_READ, 7, 7);
        p[0].postSend(List.of(write(1, 64, h.b.buf + 4096, h.b.mr.rkey()), follower()));
        assertFailedThenFlushed(p[0], WcStatus.REM_INV_REQ_ERR);
        assertArrayEquals(MARK, h.b.read(4096, MARK.length));
    }

    @Test
    void aResponderWithoutReadAndAtomicResourcesRefusesThemWithRemInvReqErr() {
        // max_dest_rd_atomic 0 on the responder (ibv_modify_qp(3): responder resources for RDMA reads and atomics;
        // rxe's check_resource answers RESPST_ERR_TOO_MANY_RDMA_ATM_REQ, an Invalid Request NAK)
        for (boolean atomic : new boolean[]{false, true}) {
            QueuePair qa = h.a.rc();
            QueuePair qb = h.b.rc();
            Hcas.connect(qa, qb, h.b.gid, Hcas.ALL, 7, 7);
            qb.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).accessFlags(Hcas.ALL).build());
            qb.modify(QpAttr.builder().state(QpState.RTR).av(AhAttr.roce(h.a.gid, 1, 1))
                    .pathMtu(Mtu.MTU_1024).destQpn(qa.qpNum()).rqPsn(0x100)
                    .maxDestRdAtomic(0).minRnrTimer(1).build());
            h.b.write(0, new byte[8]);
            SendWr op = atomic
                    ? new SendWr.AtomicFetchAndAdd(1, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey(), 5)
                    : new SendWr.RdmaRead(1, List.of(h.a.sge(0, 64)), SIGNALED, h.b.buf, h.b.mr.rkey());
            qa.postSend(List.of(op, follower()));
            assertFailedThenFlushed(qa, WcStatus.REM_INV_REQ_ERR);
            assertEquals(QpState.ERR, qb.query().qpState(), "the responder's QP went to ERR too");
            assertArrayEquals(new byte[8], h.b.read(0, 8), "the add did not run");
        }
    }

    @Test
    void sendLongerThanTheReceiveIsRemInvReqErrAndLocLenErrAtTheReceiver() {
        QueuePair[] p = h.pair();
        p[1].postRecv(RecvWr.of(5, h.b.sge(0, 16)));
        p[0].postSend(List.of(new SendWr.Send(1, List.of(h.a.sge(0, 100)), SIGNALED, null), follower()));
        assertFailedThenFlushed(p[0], WcStatus.REM_INV_REQ_ERR);
        WorkCompletion r = Hcas.one(h.b.cq);
        assertEquals(5, r.wrId());
        assertEquals(WcStatus.LOC_LEN_ERR, r.status());
    }

    @Test
    void receiveBufferWithABadKeyIsRemOpErrAndLocProtErrAtTheReceiver() {
        QueuePair[] p = h.pair();
        p[1].postRecv(RecvWr.of(5, new Sge(h.b.buf, 64, h.b.mr.lkey() ^ 0x22)));
        p[0].postSend(List.of(new SendWr.Send(1, List.of(h.a.sge(0, 32)), SIGNALED, null), follower()));
        assertFailedThenFlushed(p[0], WcStatus.REM_OP_ERR);
        WorkCompletion r = Hcas.one(h.b.cq);
        assertEquals(WcStatus.LOC_PROT_ERR, r.status());
    }

    @Test
    void sendWithInvalidateInvalidatesABoundType2Window() {
        QueuePair[] p = h.pair();
        MemoryRegion bindable = h.b.pd.regMr(h.b.buf, 65536, Hcas.ALL | Access.MW_BIND);
        MemoryWindow mw = h.b.pd.allocMw(MwType.TYPE_2);
        int key = SendWr.incRkey(mw.rkey());
        p[1].postSend(new SendWr.BindMw(50, SIGNALED, mw, key, new MwBindInfo(bindable, h.b.buf, 4096,
                Access.REMOTE_WRITE | Access.REMOTE_READ)));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.b.cq).status());
        h.a.write(0, "through the window".getBytes());
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 18)), SIGNALED, h.b.buf + 100, key));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertArrayEquals("through the window".getBytes(), h.b.read(100, 18));

        p[1].postRecv(RecvWr.of(5, h.b.sge(8192, 64)));
        p[0].postSend(new SendWr.SendWithInv(2, List.of(h.a.sge(0, 8)), SIGNALED, key));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        WorkCompletion r = Hcas.one(h.b.cq);
        assertEquals(WcFlags.WITH_INV, r.wcFlags() & WcFlags.WITH_INV);
        assertEquals(key, r.invalidatedRkey());

        h.b.write(100, MARK);
        p[0].postSend(List.of(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 18)), SIGNALED, h.b.buf + 100, key), follower()));
        assertFailedThenFlushed(p[0], WcStatus.REM_ACCESS_ERR);
        assertArrayEquals(MARK, h.b.read(100, MARK.length));
    }

    private QueuePair[] udPair() {
        QueuePair ua = h.a.ud();
        QueuePair ub = h.b.ud();
        for (QueuePair q : List.of(ua, ub)) {
            q.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).qkey(0x11111111).build());
            q.modify(QpAttr.builder().state(QpState.RTR).build());
            q.modify(QpAttr.builder().state(QpState.RTS).sqPsn(0).build());
        }
        return new QueuePair[]{ua, ub};
    }

    @Test
    void udSendCarriesAGrhAndChecksTheQKey() {
        QueuePair[] u = udPair();
        AddressHandle ah = h.a.pd.createAh(AhAttr.roce(h.b.gid, 1, 1));
        byte[] msg = "a datagram".getBytes();
        h.a.write(0, msg);
        u[1].postRecv(List.of(RecvWr.of(1, h.b.sge(0, 40 + 64)), RecvWr.of(2, h.b.sge(4096, 40 + 64))));
        u[0].postSend(new SendWr.Send(10, List.of(h.a.sge(0, msg.length)), SIGNALED,
                new UdDestination(ah, u[1].qpNum(), 0x22222222))); // wrong Q_Key: dropped
        u[0].postSend(new SendWr.SendWithImm(11, List.of(h.a.sge(0, msg.length)), SIGNALED, 77,
                new UdDestination(ah, u[1].qpNum(), 0x11111111)));
        List<WorkCompletion> s = Hcas.poll(h.a.cq, 2);
        assertTrue(s.stream().allMatch(WorkCompletion::isSuccess), "UD sends complete whether or not they land");
        WorkCompletion r = Hcas.one(h.b.cq);
        assertEquals(1, r.wrId(), "the wrong-Q_Key datagram consumed nothing");
        assertEquals(WcOpcode.RECV, r.opcode());
        assertEquals(40 + msg.length, r.byteLen());
        assertEquals(WcFlags.GRH, r.wcFlags() & WcFlags.GRH);
        assertEquals(77, r.immData());
        assertEquals(u[0].qpNum(), r.srcQp());
        assertArrayEquals(msg, h.b.read(40, msg.length));
        assertArrayEquals(Arrays.copyOfRange(h.a.gid.raw(), 0, 16), h.b.read(8, 16), "the GRH carries the SGID");
        assertTrue(h.b.cq.poll(4).isEmpty());
    }

    @Test
    void udSendLongerThanThePathMtuIsLocLenErr() {
        QueuePair[] u = udPair();
        AddressHandle ah = h.a.pd.createAh(AhAttr.roce(h.b.gid, 1, 1));
        u[0].postSend(new SendWr.Send(1, List.of(h.a.sge(0, 2000)), SIGNALED,
                new UdDestination(ah, u[1].qpNum(), 0x11111111)));
        assertEquals(WcStatus.LOC_LEN_ERR, Hcas.one(h.a.cq).status());
    }
}
