package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AddressHandle;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.GlobalRoute;
import dev.dmaplane.rdma.verbs.MigState;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpAttrMask;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.UdDestination;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The modify_qp state machine of {@code ibv_modify_qp(3)} as the kernel enforces it in
 * {@code ib_modify_qp_is_ok} ({@code drivers/infiniband/core/verbs.c}, {@code qp_state_table}): every transition
 * of the table is accepted with exactly its required attributes for RC, UC and UD, with each of its optional
 * ones, and refused with {@code EINVAL} when a required one is missing or any other one is given; transitions
 * outside the table are refused; {@code IB_QP_CUR_STATE} only from RTR, RTS, SQD, SQE. Values are checked as
 * {@code rxe_qp_chk_attr} and {@code _ib_modify_qp} do (ports, timeouts, RD atomics, address vectors,
 * alternate paths banned on RoCE, PSNs masked to 24 bits). A refused modify changes nothing.
 */
class ModifyQpTest {
    /**
     * The expected table, written out from verbs.c independently of the implementation: from, to, type,
     * required, optional (attribute names without IB_QP_).
     */
    private static final String[] TABLE = {
            "RESET RESET RC - -", "RESET RESET UC - -", "RESET RESET UD - -",
            "RESET INIT UD PKEY_INDEX,PORT,QKEY -",
            "RESET INIT UC PKEY_INDEX,PORT,ACCESS_FLAGS -",
            "RESET INIT RC PKEY_INDEX,PORT,ACCESS_FLAGS -",
            "INIT RESET RC - -", "INIT RESET UC - -", "INIT RESET UD - -",
            "INIT ERR RC - -", "INIT ERR UC - -", "INIT ERR UD - -",
            "INIT INIT UD - PKEY_INDEX,PORT,QKEY",
            "INIT INIT UC - PKEY_INDEX,PORT,ACCESS_FLAGS",
            "INIT INIT RC - PKEY_INDEX,PORT,ACCESS_FLAGS",
            "INIT RTR UC AV,PATH_MTU,DEST_QPN,RQ_PSN ALT_PATH,ACCESS_FLAGS,PKEY_INDEX",
            "INIT RTR RC AV,PATH_MTU,DEST_QPN,RQ_PSN,MAX_DEST_RD_ATOMIC,MIN_RNR_TIMER ALT_PATH,ACCESS_FLAGS,PKEY_INDEX",
            "INIT RTR UD - PKEY_INDEX,QKEY",
            "RTR RESET RC - -", "RTR RESET UC - -", "RTR RESET UD - -",
            "RTR ERR RC - -", "RTR ERR UC - -", "RTR ERR UD - -",
            "RTR RTS UD SQ_PSN CUR_STATE,QKEY",
            "RTR RTS UC SQ_PSN CUR_STATE,ALT_PATH,ACCESS_FLAGS,PATH_MIG_STATE",
            "RTR RTS RC TIMEOUT,RETRY_CNT,RNR_RETRY,SQ_PSN,MAX_QP_RD_ATOMIC CUR_STATE,ALT_PATH,ACCESS_FLAGS,MIN_RNR_TIMER,PATH_MIG_STATE",
            "RTS RESET RC - -", "RTS RESET UC - -", "RTS RESET UD - -",
            "RTS ERR RC - -", "RTS ERR UC - -", "RTS ERR UD - -",
            "RTS RTS UD - CUR_STATE,QKEY",
            "RTS RTS UC - CUR_STATE,ACCESS_FLAGS,ALT_PATH,PATH_MIG_STATE",
            "RTS RTS RC - CUR_STATE,ACCESS_FLAGS,ALT_PATH,PATH_MIG_STATE,MIN_RNR_TIMER",
            "RTS SQD UD - EN_SQD_ASYNC_NOTIFY", "RTS SQD UC - EN_SQD_ASYNC_NOTIFY", "RTS SQD RC - EN_SQD_ASYNC_NOTIFY",
            "SQD RESET RC - -", "SQD RESET UC - -", "SQD RESET UD - -",
            "SQD ERR RC - -", "SQD ERR UC - -", "SQD ERR UD - -",
            "SQD RTS UD - CUR_STATE,QKEY",
            "SQD RTS UC - CUR_STATE,ALT_PATH,ACCESS_FLAGS,PATH_MIG_STATE",
            "SQD RTS RC - CUR_STATE,ALT_PATH,ACCESS_FLAGS,MIN_RNR_TIMER,PATH_MIG_STATE",
            "SQD SQD UD - PKEY_INDEX,QKEY",
            "SQD SQD UC - AV,ALT_PATH,ACCESS_FLAGS,PKEY_INDEX,PATH_MIG_STATE",
            "SQD SQD RC - PORT,AV,TIMEOUT,RETRY_CNT,RNR_RETRY,MAX_QP_RD_ATOMIC,MAX_DEST_RD_ATOMIC,ALT_PATH,ACCESS_FLAGS,PKEY_INDEX,MIN_RNR_TIMER,PATH_MIG_STATE",
            "SQE RESET UC - -", "SQE RESET UD - -",
            "SQE ERR UC - -", "SQE ERR UD - -",
            "SQE RTS UD - CUR_STATE,QKEY",
            "SQE RTS UC - CUR_STATE,ACCESS_FLAGS",
            "ERR RESET RC - -", "ERR RESET UC - -", "ERR RESET UD - -",
            "ERR ERR RC - -", "ERR ERR UC - -", "ERR ERR UD - -",
    };

    private record Row(QpState from, QpState to, QpType type, int required, int optional) {
    }

    private static final Map<String, Row> ROWS = new HashMap<>();

    static {
        for (String line : TABLE) {
            String[] p = line.split(" ");
            Row r = new Row(QpState.valueOf(p[0]), QpState.valueOf(p[1]), QpType.valueOf(p[2]), bits(p[3]), bits(p[4]));
            ROWS.put(r.from + " " + r.to + " " + r.type, r);
        }
    }

    private static int bits(String names) {
        if (names.equals("-")) {
            return 0;
        }
        int m = 0;
        try {
            for (String n : names.split(",")) {
                Field fld = QpAttrMask.class.getField(n);
                m |= fld.getInt(null);
            }
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(names, e);
        }
        return m;
    }

    private final Fixture f = new Fixture();
    private final VerbsContext ctx = f.open();
    private final ProtectionDomain pd = ctx.allocPd();
    private final CompletionQueue cq = ctx.createCq(4096, null, 0);
    private final AddressHandle ah = pd.createAh(AhAttr.roce(Gid.parse("::ffff:10.0.0.9"), 1, 1));
    private final AhAttr av = AhAttr.roce(Gid.parse("::ffff:10.0.0.2"), 1, 1);

    @AfterEach
    void close() {
        f.close();
    }

    /** A valid value for the attribute {@code bit}, set on {@code b}. */
    private void set(QpAttr.Builder b, int bit, QpState cur) {
        switch (bit) {
            case QpAttrMask.CUR_STATE -> b.curState(cur);
            case QpAttrMask.EN_SQD_ASYNC_NOTIFY -> b.enSqdAsyncNotify(true);
            case QpAttrMask.ACCESS_FLAGS -> b.accessFlags(Fixture.ALL_REMOTE);
            case QpAttrMask.PKEY_INDEX -> b.pkeyIndex(0);
            case QpAttrMask.PORT -> b.port(1);
            case QpAttrMask.QKEY -> b.qkey(0x1234);
            case QpAttrMask.AV -> b.av(av);
            case QpAttrMask.PATH_MTU -> b.pathMtu(Mtu.MTU_1024);
            case QpAttrMask.TIMEOUT -> b.timeout(14);
            case QpAttrMask.RETRY_CNT -> b.retryCnt(7);
            case QpAttrMask.RNR_RETRY -> b.rnrRetry(7);
            case QpAttrMask.RQ_PSN -> b.rqPsn(0x10);
            case QpAttrMask.MAX_QP_RD_ATOMIC -> b.maxRdAtomic(4);
            case QpAttrMask.ALT_PATH -> b.altPath(av, 0, 1, 14);
            case QpAttrMask.MIN_RNR_TIMER -> b.minRnrTimer(12);
            case QpAttrMask.SQ_PSN -> b.sqPsn(0x20);
            case QpAttrMask.MAX_DEST_RD_ATOMIC -> b.maxDestRdAtomic(4);
            case QpAttrMask.PATH_MIG_STATE -> b.pathMigState(MigState.MIGRATED);
            case QpAttrMask.CAP -> b.cap(new QpCap(8, 8, 1, 1, 0));
            case QpAttrMask.DEST_QPN -> b.destQpn(0x100);
            case QpAttrMask.RATE_LIMIT -> b.rateLimit(1000);
            default -> throw new IllegalArgumentException("bit 0x" + Integer.toHexString(bit));
        }
    }

    private QpAttr attr(QpState cur, QpState to, int mask) {
        QpAttr.Builder b = QpAttr.builder().state(to);
        for (int bit : QpAttrMask.ALL) {
            if (bit != QpAttrMask.STATE && (mask & bit) != 0) {
                set(b, bit, cur);
            }
        }
        return b.build();
    }

    /** A fresh QP of {@code type} driven to {@code state} by valid transitions. */
    private QueuePair qpIn(QpType type, QpState state) {
        QueuePair qp = pd.createQp(Fixture.qpInit(cq, type, 16));
        switch (state) {
            case RESET -> {
            }
            case INIT -> qp.modify(Fixture.toInit(type));
            case RTR -> {
                qp.modify(Fixture.toInit(type));
                qp.modify(Fixture.toRtr(type, 0x100));
            }
            case RTS, SQD, SQE -> {
                Fixture.connect(qp, 0xABCDE);
                if (state == QpState.SQD) {
                    qp.modify(QpAttr.builder().state(QpState.SQD).build());
                } else if (state == QpState.SQE) {
                    // a send into nowhere fails; an unreliable QP then enters SQ error
                    SendWr wr = new SendWr.Send(1, List.of(), SendFlags.SIGNALED,
                            type == QpType.UD ? new UdDestination(ah, 0xABCDE, 0x1234) : null);
                    qp.postSend(wr);
                    cq.poll(16);
                }
            }
            case ERR -> {
                qp.modify(Fixture.toInit(type));
                qp.modify(QpAttr.builder().state(QpState.ERR).build());
            }
        }
        assertEquals(state, qp.state(), type + " setup");
        return qp;
    }

    private static void refused(QueuePair qp, QpAttr a, String what) {
        QpState before = qp.state();
        QpAttr attrs = qp.query();
        ErrnoException e = assertThrows(ErrnoException.class, () -> qp.modify(a), what);
        assertEquals(Errno.EINVAL, e.errno(), what + ": " + e.getMessage());
        assertEquals(before, qp.state(), what + ": a refused modify changes nothing");
        assertEquals(attrs, qp.query(), what + ": a refused modify changes no attribute");
    }

    @ParameterizedTest
    @EnumSource(QpType.class)
    void everyTransitionOfTheTableTakesExactlyItsAttributes(QpType type) {
        int checked = 0;
        for (Row r : ROWS.values()) {
            if (r.type != type) {
                continue;
            }
            String t = type + " " + r.from + " -> " + r.to;
            QueuePair qp = qpIn(type, r.from);
            for (int bit : QpAttrMask.ALL) {
                if ((r.required & bit) != 0) {
                    refused(qp, attr(r.from, r.to, r.required & ~bit), t + " without " + QpAttrMask.toString(bit));
                } else if ((r.optional & bit) == 0 && bit != QpAttrMask.STATE) {
                    refused(qp, attr(r.from, r.to, r.required | bit), t + " with " + QpAttrMask.toString(bit));
                }
            }
            qp.modify(attr(r.from, r.to, r.required));
            assertEquals(r.to, qp.state(), t);
            checked++;
            for (int bit : QpAttrMask.ALL) {
                if ((r.optional & bit) == 0) {
                    continue;
                }
                QueuePair q = qpIn(type, r.from);
                QpAttr a = attr(r.from, r.to, r.required | bit);
                if (bit == QpAttrMask.ALT_PATH) {
                    ErrnoException e = assertThrows(ErrnoException.class, () -> q.modify(a), t);
                    assertTrue(e.getMessage().contains("RoCE"), "the table allows ALT_PATH, RoCE does not: " + e.getMessage());
                } else {
                    q.modify(a);
                    assertEquals(r.to, q.state(), t + " with optional " + QpAttrMask.toString(bit));
                }
                q.destroy();
            }
            qp.destroy();
        }
        assertTrue(checked >= 18, "transitions checked: " + checked);
    }

    @ParameterizedTest
    @EnumSource(QpType.class)
    void transitionsOutsideTheTableAreRefused(QpType type) {
        List<QpState> reachable = new ArrayList<>(List.of(QpState.values()));
        if (type == QpType.RC) {
            reachable.remove(QpState.SQE);
        }
        for (QpState from : reachable) {
            QueuePair qp = qpIn(type, from);
            for (QpState to : QpState.values()) {
                if (!ROWS.containsKey(from + " " + to + " " + type)) {
                    refused(qp, QpAttr.builder().state(to).build(), type + " " + from + " -> " + to);
                }
            }
            qp.destroy();
        }
    }

    @Test
    void anRcQpFailingASendGoesToErrNotSqe() {
        QueuePair qp = qpIn(QpType.RC, QpState.RTS);
        qp.postSend(new SendWr.Send(1, List.of(), SendFlags.SIGNALED, null));
        assertEquals(WcStatus.RETRY_EXC_ERR, cq.poll(1).getFirst().status());
        assertEquals(QpState.ERR, qp.state());
    }

    @Test
    void currentStateIsAcceptedFromRtrRtsSqdSqeOnlyAndMustBeTrue() {
        QueuePair init = qpIn(QpType.RC, QpState.INIT);
        refused(init, QpAttr.builder().state(QpState.INIT).curState(QpState.INIT).build(), "CUR_STATE in INIT");
        QueuePair rts = qpIn(QpType.RC, QpState.RTS);
        rts.modify(QpAttr.builder().state(QpState.RTS).curState(QpState.RTS).minRnrTimer(3).build());
        refused(rts, QpAttr.builder().state(QpState.RTS).curState(QpState.SQD).build(), "a wrong CUR_STATE");
        QueuePair sqe = qpIn(QpType.UD, QpState.SQE);
        sqe.modify(QpAttr.builder().state(QpState.RTS).curState(QpState.SQE).build());
        assertEquals(QpState.RTS, sqe.state());
    }

    @Test
    void withoutAStateTheQpStaysAndTakesTheAttributesOfThatSelfTransition() {
        QueuePair qp = qpIn(QpType.RC, QpState.RTS);
        qp.modify(QpAttr.builder().minRnrTimer(20).build());
        assertEquals(QpState.RTS, qp.state());
        assertEquals(20, qp.query().minRnrTimer());
        QueuePair rtr = qpIn(QpType.RC, QpState.RTR);
        refused(rtr, QpAttr.builder().minRnrTimer(20).build(), "RTR -> RTR is not in the table");
    }

    @Test
    void valuesAreCheckedAgainstTheDeviceAndPort() {
        QueuePair reset = qpIn(QpType.RC, QpState.RESET);
        QpAttr.Builder init = Fixture.toInit(QpType.RC).toBuilder();
        refused(reset, init.port(2).build(), "port 2 of a one-port device");
        refused(reset, Fixture.toInit(QpType.RC).toBuilder().pkeyIndex(1).build(), "P_Key index beyond the table");
        refused(reset, Fixture.toInit(QpType.RC).toBuilder().accessFlags(Access.ON_DEMAND).build(), "QP access flags");

        QueuePair qp = qpIn(QpType.RC, QpState.INIT);
        QpAttr rtr = Fixture.toRtr(QpType.RC, 0x100);
        refused(qp, rtr.toBuilder().destQpn(1 << 24).build(), "a 25-bit destination QPN");
        refused(qp, rtr.toBuilder().minRnrTimer(32).build(), "min RNR timer 32");
        refused(qp, rtr.toBuilder().maxDestRdAtomic(129).build(), "max_dest_rd_atomic beyond max_qp_rd_atom");
        refused(qp, rtr.toBuilder().av(new AhAttr(null, 0, 0, 0, 0, 1)).build(), "RoCE address vector without GRH");
        refused(qp, rtr.toBuilder().av(new AhAttr(GlobalRoute.to(Gid.parse("::ffff:10.0.0.2"), 16), 0, 0, 0, 0, 1)).build(),
                "sgid index beyond the GID table");
        refused(qp, rtr.toBuilder().av(new AhAttr(GlobalRoute.to(Gid.parse("::ffff:10.0.0.2"), 7), 0, 0, 0, 0, 1)).build(),
                "empty GID table entry");
        qp.modify(rtr);

        QpAttr rts = Fixture.toRts(QpType.RC);
        refused(qp, rts.toBuilder().timeout(32).build(), "timeout 32");
        refused(qp, rts.toBuilder().retryCnt(8).build(), "retry count 8");
        refused(qp, rts.toBuilder().rnrRetry(8).build(), "RNR retry 8");
        refused(qp, rts.toBuilder().maxRdAtomic(129).build(), "max_rd_atomic beyond max_qp_init_rd_atom");
        qp.modify(rts.toBuilder().sqPsn(0x7FFF_FFFF).build());
        QpAttr q = qp.query();
        assertEquals(0xFF_FFFF, q.sqPsn(), "PSNs are masked to 24 bits, as _ib_modify_qp does");
        assertEquals(0x100, q.destQpNum());
        assertEquals(Mtu.MTU_1024, q.pathMtu());
        assertEquals(Fixture.ALL_REMOTE, q.qpAccessFlags());
        assertEquals(QpState.RTS, q.qpState());
        assertTrue(q.has(QpAttrMask.STATE | QpAttrMask.CAP | QpAttrMask.DEST_QPN | QpAttrMask.AV));
    }

    @Test
    void resetEmptiesTheQueuesWithoutCompletionsAndForgetsAttributes() {
        QueuePair qp = qpIn(QpType.RC, QpState.INIT);
        qp.postRecv(RecvWr.of(7));
        qp.modify(QpAttr.builder().state(QpState.RESET).build());
        assertTrue(cq.poll(8).isEmpty(), "RESET completes nothing");
        QpAttr q = qp.query();
        assertEquals(QpState.RESET, q.qpState());
        assertEquals(0, q.portNum());
        assertFalse(q.has(QpAttrMask.ACCESS_FLAGS));
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> qp.postRecv(RecvWr.of(8))).errno());
    }
}
