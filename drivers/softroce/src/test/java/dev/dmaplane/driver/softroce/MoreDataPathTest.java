package dev.dmaplane.driver.softroce;

import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionChannel;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.INLINE;
import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.rdma.verbs.SendFlags.SOLICITED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * More of the data path: solicited events, SRQs, on-demand regions as targets, inline and unsignaled work, PSN
 * wrap-around at 2^24, and a QP reset and connected again.
 */
@Timeout(60)
class MoreDataPathTest {
    private final Hcas h = new Hcas();

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    /** rxe_cq_post on a full CQ: the completion is lost, CQ_ERR, and the QP that lost it goes to ERR with QP_FATAL. */
    @Test
    void aCqOverrunOnTheHcaRaisesCqErrAndQpFatal() {
        var small = h.a.ctx.createCq(2, null, 0);
        var qa = h.a.pd.createQp(new dev.dmaplane.rdma.verbs.QpInitAttr(small, small, null,
                new dev.dmaplane.rdma.verbs.QpCap(8, 8, 1, 1, 0), dev.dmaplane.rdma.verbs.QpType.RC, false));
        var qb = h.b.rc();
        Hcas.connect(qa, qb, h.b.gid, Hcas.ALL, 7, 7);
        Hcas.connect(qb, qa, h.a.gid, Hcas.ALL, 7, 7);
        qa.postSend(List.of(new SendWr.RdmaWrite(0, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey())));
        var err = Hcas.event(h.a.ctx);
        assertEquals(dev.dmaplane.rdma.verbs.EventType.CQ_ERR, err.type());
        assertSame(small, err.cq().orElseThrow());
        var fatal = Hcas.event(h.a.ctx);
        assertEquals(dev.dmaplane.rdma.verbs.EventType.QP_FATAL, fatal.type());
        assertSame(qa, fatal.qp().orElseThrow());
        assertEquals(dev.dmaplane.rdma.verbs.QpState.ERR, qa.query().qpState());
        assertEquals(List.of(0L, 1L), small.poll(8).stream().map(WorkCompletion::wrId).toList(), "the third was lost");
        err.ack();
        fatal.ack();
    }

    /** SQD (ibv_modify_qp to IBV_QPS_SQD with en_sqd_async_notify): work started finishes, then SQ_DRAINED; RTS resumes. */
    @Test
    void sqdDrainsWhatTheHcaStartedAndRtsResumesTheRest() {
        QueuePair[] p = h.pair();
        h.a.write(0, Hcas.random(64, 3));
        h.driver.carrier("rxe1", "down"); // the write stays in flight, retried, until the carrier returns
        assertEquals(dev.dmaplane.rdma.verbs.EventType.PORT_ERR, Hcas.event(h.b.ctx).type());
        p[0].postSend(List.of(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 64)), SIGNALED, h.b.buf + 64, h.b.mr.rkey())));
        p[0].modify(dev.dmaplane.rdma.verbs.QpAttr.builder().state(dev.dmaplane.rdma.verbs.QpState.SQD)
                .enSqdAsyncNotify(true).build());
        assertTrue(p[0].query().sqDraining(), "the started write is not done");
        assertTrue(h.a.ctx.pollAsyncEvent().isEmpty(), "not drained yet");
        h.driver.carrier("rxe1", "up");
        var drained = Hcas.event(h.a.ctx);
        assertEquals(dev.dmaplane.rdma.verbs.EventType.SQ_DRAINED, drained.type());
        assertSame(p[0], drained.qp().orElseThrow());
        drained.ack();
        assertEquals(1, Hcas.one(h.a.cq).wrId());
        assertArrayEquals(Hcas.random(64, 3), h.b.read(64, 64));
        p[0].postSend(List.of(new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 64)), SIGNALED, h.b.buf + 128, h.b.mr.rkey())));
        assertTrue(h.a.cq.poll(1).isEmpty(), "SQD starts nothing new");
        p[0].modify(dev.dmaplane.rdma.verbs.QpAttr.builder().state(dev.dmaplane.rdma.verbs.QpState.RTS).build());
        assertEquals(2, Hcas.one(h.a.cq).wrId(), "back in RTS the waiting request runs");
        assertArrayEquals(Hcas.random(64, 3), h.b.read(128, 64));
    }

    /**
     * Windows on the HCA: a type 1 window bound with ibv_bind_mw opens exactly its range to remote writes; a type 2
     * window bound through the QP is closed again by a LOCAL_INV, after which its rkey is refused (IBTA 10.6.7).
     */
    @Test
    void windowsOpenExactlyTheirRangeAndLocalInvalidateClosesAType2Window() {
        QueuePair[] p = h.pair();
        var bindable = h.b.pd.regMr(h.b.buf, 65536, Hcas.ALL | dev.dmaplane.rdma.verbs.Access.MW_BIND);
        var type1 = h.b.pd.allocMw(dev.dmaplane.rdma.verbs.MwType.TYPE_1);
        int key1 = type1.bind(p[1], new dev.dmaplane.rdma.verbs.MwBindInfo(bindable, h.b.buf + 4096, 4096,
                dev.dmaplane.rdma.verbs.Access.REMOTE_WRITE), 10, SIGNALED);
        assertTrue(Hcas.one(h.b.cq).isSuccess());
        h.a.write(0, Hcas.random(32, 4));
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 32)), SIGNALED, h.b.buf + 4096 + 100, key1));
        assertTrue(Hcas.one(h.a.cq).isSuccess());
        assertArrayEquals(Hcas.random(32, 4), h.b.read(4096 + 100, 32));

        var type2 = h.b.pd.allocMw(dev.dmaplane.rdma.verbs.MwType.TYPE_2);
        int key2 = SendWr.incRkey(type2.rkey());
        p[1].postSend(new SendWr.BindMw(11, SIGNALED, type2, key2, new dev.dmaplane.rdma.verbs.MwBindInfo(bindable,
                h.b.buf + 8192, 4096, dev.dmaplane.rdma.verbs.Access.REMOTE_WRITE)));
        assertTrue(Hcas.one(h.b.cq).isSuccess());
        p[0].postSend(new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 32)), SIGNALED, h.b.buf + 8192, key2));
        assertTrue(Hcas.one(h.a.cq).isSuccess());
        p[1].postSend(new SendWr.LocalInv(12, SIGNALED, key2));
        WorkCompletion inv = Hcas.one(h.b.cq);
        assertTrue(inv.isSuccess());
        assertEquals(dev.dmaplane.rdma.verbs.WcOpcode.LOCAL_INV, inv.opcode());
        h.b.write(8192 + 64, new byte[32]);
        p[0].postSend(new SendWr.RdmaWrite(3, List.of(h.a.sge(0, 32)), SIGNALED, h.b.buf + 8192 + 64, key2));
        assertEquals(dev.dmaplane.rdma.verbs.WcStatus.REM_ACCESS_ERR, Hcas.one(h.a.cq).status());
        assertArrayEquals(new byte[32], h.b.read(8192 + 64, 32), "the invalidated window let nothing through");

        // on the HCA's send queue, refused local operations end in their own statuses and the QP in ERR
        QueuePair[] q = h.pair();
        q[1].postSend(new SendWr.LocalInv(13, SIGNALED, key2)); // already invalid
        assertEquals(dev.dmaplane.rdma.verbs.WcStatus.LOC_QP_OP_ERR, Hcas.one(h.b.cq).status());
        QueuePair[] r = h.pair();
        r[1].postSend(new SendWr.BindMw(14, SIGNALED, type2, SendWr.incRkey(type2.rkey()),
                new dev.dmaplane.rdma.verbs.MwBindInfo(bindable, h.b.buf + 8192, 0, dev.dmaplane.rdma.verbs.Access.REMOTE_WRITE)));
        assertEquals(dev.dmaplane.rdma.verbs.WcStatus.MW_BIND_ERR, Hcas.one(h.b.cq).status(), "o10-37.2.40: zero length");
    }

    @Test
    void theSolicitedEventBitReachesTheReceiversCq() {
        CompletionChannel ch = h.b.ctx.createCompChannel();
        CompletionQueue rcq = h.b.ctx.createCq(64, ch, 0);
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.pd.createQp(new QpInitAttr(h.b.cq, rcq, null, new QpCap(16, 16, 4, 4, 64), QpType.RC, false));
        Hcas.connect(qa, qb, h.b.gid, Hcas.ALL, 7, 7);
        Hcas.connect(qb, qa, h.a.gid, Hcas.ALL, 7, 7);
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, 64)), RecvWr.of(2, h.b.sge(64, 64))));
        rcq.reqNotify(true);
        qa.postSend(new SendWr.Send(1, List.of(h.a.sge(0, 8)), SIGNALED, null));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertEquals(1, Hcas.one(rcq).wrId());
        assertTrue(ch.pollCqEvent().isEmpty(), "an unsolicited receive raises no solicited-only event");
        qa.postSend(new SendWr.Send(2, List.of(h.a.sge(0, 8)), SIGNALED | SOLICITED, null));
        assertTrue(ch.getCqEvent(Duration.ofSeconds(10)).isPresent(), "the solicited receive does");
        rcq.ackEvents(1);
        assertEquals(2, Hcas.one(rcq).wrId());
    }

    @Test
    void sendsLandInAnSrqAttachedQp() {
        SharedReceiveQueue srq = h.b.pd.createSrq(new SrqAttr(64, 2, 0));
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.pd.createQp(new QpInitAttr(h.b.cq, h.b.cq, srq, new QpCap(16, 0, 4, 0, 0), QpType.RC, false));
        Hcas.connect(qa, qb, h.b.gid, Hcas.ALL, 7, 7);
        Hcas.connect(qb, qa, h.a.gid, Hcas.ALL, 7, 7);
        for (int i = 0; i < 4; i++) {
            srq.postRecv(RecvWr.of(100 + i, h.b.sge(i * 4096L, 4096)));
        }
        byte[] msg = Hcas.random(3000, 5);
        h.a.write(0, msg);
        for (int i = 0; i < 4; i++) {
            qa.postSend(new SendWr.Send(i, List.of(h.a.sge(0, 3000)), SIGNALED, null));
        }
        assertTrue(Hcas.poll(h.a.cq, 4).stream().allMatch(WorkCompletion::isSuccess));
        List<WorkCompletion> r = Hcas.poll(h.b.cq, 4);
        assertEquals(List.of(100L, 101L, 102L, 103L), r.stream().map(WorkCompletion::wrId).toList());
        for (int i = 0; i < 4; i++) {
            assertArrayEquals(msg, h.b.read(i * 4096L, 3000));
        }
    }

    @Test
    void onDemandRegionsAreFaultedInByTheResponder() {
        long odpBuf = h.b.mm.mmapAnonymous(1 << 20, Prot.PROT_READ | Prot.PROT_WRITE);
        MemoryRegion odp = h.b.pd.regMr(odpBuf, 1 << 20, Hcas.ALL | Access.ON_DEMAND);
        QueuePair[] p = h.pair();
        byte[] data = Hcas.random(200_000, 6);
        h.a.write(0, data);
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, data.length)), SIGNALED, odpBuf + 777, odp.rkey()));
        p[0].postSend(new SendWr.RdmaRead(2, List.of(h.a.sge(1 << 20, data.length)), SIGNALED, odpBuf + 777, odp.rkey()));
        assertTrue(Hcas.poll(h.a.cq, 2).stream().allMatch(WorkCompletion::isSuccess));
        byte[] there = new byte[data.length];
        h.b.mm.read(odpBuf + 777, MemorySegment.ofArray(there));
        assertArrayEquals(data, there);
        assertArrayEquals(data, h.a.read(1 << 20, data.length));
    }

    /**
     * An on-demand target under the HCA: munmap invalidates what the HCA mapped (the interval notifier), a later
     * write into the hole is refused (REM_ACCESS_ERR, the QP in ERR), and on a new QP the pages still mapped take
     * writes, trains of short writes included.
     */
    @Test
    void anOnDemandTargetLosesWhatIsUnmappedAndKeepsTheRest() {
        long odpBuf = h.b.mm.mmapAnonymous(4 * 4096, Prot.PROT_READ | Prot.PROT_WRITE);
        MemoryRegion odp = h.b.pd.regMr(odpBuf, 4 * 4096, Hcas.ALL | Access.ON_DEMAND);
        QueuePair[] p = h.pair();
        h.a.write(0, Hcas.random(4 * 4096, 8));
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 4 * 4096)), SIGNALED, odpBuf, odp.rkey()));
        assertTrue(Hcas.one(h.a.cq).isSuccess());
        var hca = h.machine.pci().function("05:00.0");
        int mapped = h.machine.activeDmaMappings(hca);

        h.b.mm.munmap(odpBuf + 2 * 4096, 4096);
        assertEquals(mapped - 1, h.machine.activeDmaMappings(hca), "the HCA's mapping of the page went with it");
        p[0].postSend(new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 64)), SIGNALED, odpBuf + 2 * 4096 + 64, odp.rkey()));
        assertEquals(dev.dmaplane.rdma.verbs.WcStatus.REM_ACCESS_ERR, Hcas.one(h.a.cq).status(), "nothing there any more");

        QueuePair[] q = h.pair();
        List<SendWr> train = new java.util.ArrayList<>();
        for (int i = 0; i < 16; i++) {
            train.add(new SendWr.RdmaWrite(10 + i, List.of(h.a.sge(64L * i, 64)), SIGNALED, odpBuf + 4096 + 64L * i,
                    odp.rkey()));
        }
        q[0].postSend(train);
        assertTrue(Hcas.poll(h.a.cq, 16).stream().allMatch(WorkCompletion::isSuccess));
        byte[] there = new byte[16 * 64];
        h.b.mm.read(odpBuf + 4096, MemorySegment.ofArray(there));
        assertArrayEquals(java.util.Arrays.copyOf(Hcas.random(4 * 4096, 8), 16 * 64), there);
        odp.destroy();
    }

    @Test
    void inlineSendsAndUnsignaledWritesComplete() {
        QueuePair[] p = h.pair();
        h.a.write(0, "inline payload".getBytes());
        p[1].postRecv(RecvWr.of(1, h.b.sge(0, 64)));
        p[0].postSend(new SendWr.Send(1, List.of(h.a.sge(0, 14)), SIGNALED | INLINE, null));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertEquals(14, Hcas.one(h.b.cq).byteLen());
        assertArrayEquals("inline payload".getBytes(), h.b.read(0, 14));

        List<SendWr> wrs = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            h.a.write(4096 + i * 64L, Hcas.random(64, i));
            wrs.add(new SendWr.RdmaWrite(10 + i, List.of(h.a.sge(4096 + i * 64L, 64)), i == 15 ? SIGNALED : 0,
                    h.b.buf + 8192 + i * 64L, h.b.mr.rkey()));
        }
        p[0].postSend(wrs);
        WorkCompletion last = Hcas.one(h.a.cq);
        assertEquals(25, last.wrId(), "only the signaled one completes");
        assertArrayEquals(h.a.read(4096, 1024), h.b.read(8192, 1024));
        assertTrue(h.a.cq.poll(4).isEmpty());
    }

    @Test
    void psnsWrapAroundAt2To24() {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        Hcas.connect(qa, qb, h.b.gid, Hcas.ALL, 7, 7, 0xFFFFFE);
        Hcas.connect(qb, qa, h.a.gid, Hcas.ALL, 7, 7, 0xFFFFFE);
        byte[] msg = Hcas.random(5000, 7);
        h.a.write(0, msg);
        qb.postRecv(RecvWr.of(1, h.b.sge(0, 8192)));
        qa.postSend(new SendWr.Send(1, List.of(h.a.sge(0, 5000)), SIGNALED, null)); // PSNs 0xFFFFFE..0x000002
        qa.postSend(new SendWr.RdmaRead(2, List.of(h.a.sge(65536, 5000)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertArrayEquals(msg, h.b.read(0, 5000));
        assertArrayEquals(msg, h.a.read(65536, 5000));
        assertEquals(5000, Hcas.one(h.b.cq).byteLen());
    }

    @Test
    void aQpResetAndConnectedAgainWorks() {
        QueuePair[] p = h.pair(Hcas.ALL, Hcas.ALL, 0, 7);
        p[0].postSend(new SendWr.Send(1, List.of(h.a.sge(0, 8)), SIGNALED, null));
        assertEquals(WcStatus.RNR_RETRY_EXC_ERR, Hcas.one(h.a.cq).status());
        for (QueuePair q : p) {
            q.modify(QpAttr.builder().state(QpState.RESET).build());
        }
        Hcas.connect(p[0], p[1], h.b.gid, Hcas.ALL, 7, 7, 0x4242);
        Hcas.connect(p[1], p[0], h.a.gid, Hcas.ALL, 7, 7, 0x4242);
        h.a.write(0, "again".getBytes());
        p[1].postRecv(RecvWr.of(3, h.b.sge(0, 64)));
        p[0].postSend(new SendWr.Send(2, List.of(h.a.sge(0, 5)), SIGNALED, null));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertEquals(3, Hcas.one(h.b.cq).wrId());
        assertArrayEquals("again".getBytes(), h.b.read(0, 5));
    }

    @Test
    void ucSendsAndWritesAreUnacknowledgedAndALostMessageIsSkipped() {
        QueuePair qa = h.a.pd.createQp(new QpInitAttr(h.a.cq, h.a.cq, null, new QpCap(16, 16, 4, 4, 0), QpType.UC, false));
        QueuePair qb = h.b.pd.createQp(new QpInitAttr(h.b.cq, h.b.cq, null, new QpCap(16, 16, 4, 4, 0), QpType.UC, false));
        for (QueuePair[] q : new QueuePair[][]{{qa, qb}, {qb, qa}}) {
            dev.dmaplane.rdma.verbs.Gid peer = q[0] == qa ? h.b.gid : h.a.gid;
            q[0].modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1)
                    .accessFlags(Access.LOCAL_WRITE | Access.REMOTE_WRITE).build());
            q[0].modify(QpAttr.builder().state(QpState.RTR).av(dev.dmaplane.rdma.verbs.AhAttr.roce(peer, 1, 1))
                    .pathMtu(dev.dmaplane.rdma.verbs.Mtu.MTU_1024).destQpn(q[1].qpNum()).rqPsn(7).build());
            q[0].modify(QpAttr.builder().state(QpState.RTS).sqPsn(7).build());
        }
        byte[] msg = Hcas.random(3000, 8);
        h.a.write(0, msg);
        // no receive posted: the first send is dropped at the responder, the sender still completes
        Engine responder = h.driver.providers.get("rxe1").engine;
        long seen = responder.pktsRecv.get();
        h.a.write(65536, Hcas.random(3000, 99));
        qa.postSend(new SendWr.Send(1, List.of(h.a.sge(65536, 3000)), SIGNALED, null));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        // its three packets reached the responder and were dropped
        eventually(() -> responder.pktsRecv.get() >= seen + 3, Duration.ofSeconds(5),
                "the dropped send's three packets reach the responder");
        qb.postRecv(RecvWr.of(5, h.b.sge(0, 4096)));
        qa.postSend(new SendWr.Send(2, List.of(h.a.sge(0, 3000)), SIGNALED, null));
        qa.postSend(new SendWr.RdmaWrite(3, List.of(h.a.sge(0, 3000)), SIGNALED, h.b.buf + 8192, h.b.mr.rkey()));
        assertTrue(Hcas.poll(h.a.cq, 2).stream().allMatch(WorkCompletion::isSuccess));
        WorkCompletion r = Hcas.one(h.b.cq);
        assertEquals(5, r.wrId());
        assertEquals(3000, r.byteLen());
        assertArrayEquals(msg, h.b.read(0, 3000));
        eventually(() -> Arrays.equals(msg, h.b.read(8192, 3000)), Duration.ofSeconds(5), "the UC write lands");
    }
}
