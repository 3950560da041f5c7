package dev.dmaplane.rdma.impl;

import dev.dmaplane.rdma.verbs.QpAttrMask;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;

import java.util.EnumMap;
import java.util.Map;

import static dev.dmaplane.rdma.verbs.QpAttrMask.*;

/**
 * The QP state machine of {@code ib_modify_qp_is_ok} ({@code drivers/infiniband/core/verbs.c},
 * {@code qp_state_table}): which transitions exist and, per QP type, which attributes each requires and which it
 * accepts. Everything else is refused.
 */
public final class QpStateTable {
    /** Required and optional attribute masks of one transition for one QP type. */
    public record Rule(int required, int optional) {
    }

    private static final int N = QpState.values().length;
    private static final boolean[][] VALID = new boolean[N][N];
    private static final Map<QpType, Rule>[][] RULES = newRules();

    static {
        for (QpState s : QpState.values()) {
            allow(s, QpState.RESET);
            if (s != QpState.RESET) {
                allow(s, QpState.ERR);
            }
        }
        allow(QpState.RESET, QpState.RESET);

        allow(QpState.RESET, QpState.INIT);
        req(QpState.RESET, QpState.INIT, QpType.UD, PKEY_INDEX | PORT | QKEY);
        req(QpState.RESET, QpState.INIT, QpType.UC, PKEY_INDEX | PORT | ACCESS_FLAGS);
        req(QpState.RESET, QpState.INIT, QpType.RC, PKEY_INDEX | PORT | ACCESS_FLAGS);

        allow(QpState.INIT, QpState.INIT);
        opt(QpState.INIT, QpState.INIT, QpType.UD, PKEY_INDEX | PORT | QKEY);
        opt(QpState.INIT, QpState.INIT, QpType.UC, PKEY_INDEX | PORT | ACCESS_FLAGS);
        opt(QpState.INIT, QpState.INIT, QpType.RC, PKEY_INDEX | PORT | ACCESS_FLAGS);

        allow(QpState.INIT, QpState.RTR);
        req(QpState.INIT, QpState.RTR, QpType.UC, AV | PATH_MTU | DEST_QPN | RQ_PSN);
        req(QpState.INIT, QpState.RTR, QpType.RC, AV | PATH_MTU | DEST_QPN | RQ_PSN | MAX_DEST_RD_ATOMIC | MIN_RNR_TIMER);
        opt(QpState.INIT, QpState.RTR, QpType.UD, PKEY_INDEX | QKEY);
        opt(QpState.INIT, QpState.RTR, QpType.UC, ALT_PATH | ACCESS_FLAGS | PKEY_INDEX);
        opt(QpState.INIT, QpState.RTR, QpType.RC, ALT_PATH | ACCESS_FLAGS | PKEY_INDEX);

        allow(QpState.RTR, QpState.RTS);
        req(QpState.RTR, QpState.RTS, QpType.UD, SQ_PSN);
        req(QpState.RTR, QpState.RTS, QpType.UC, SQ_PSN);
        req(QpState.RTR, QpState.RTS, QpType.RC, TIMEOUT | RETRY_CNT | RNR_RETRY | SQ_PSN | MAX_QP_RD_ATOMIC);
        opt(QpState.RTR, QpState.RTS, QpType.UD, CUR_STATE | QKEY);
        opt(QpState.RTR, QpState.RTS, QpType.UC, CUR_STATE | ALT_PATH | ACCESS_FLAGS | PATH_MIG_STATE);
        opt(QpState.RTR, QpState.RTS, QpType.RC, CUR_STATE | ALT_PATH | ACCESS_FLAGS | MIN_RNR_TIMER | PATH_MIG_STATE);

        allow(QpState.RTS, QpState.RTS);
        opt(QpState.RTS, QpState.RTS, QpType.UD, CUR_STATE | QKEY);
        opt(QpState.RTS, QpState.RTS, QpType.UC, CUR_STATE | ACCESS_FLAGS | ALT_PATH | PATH_MIG_STATE);
        opt(QpState.RTS, QpState.RTS, QpType.RC, CUR_STATE | ACCESS_FLAGS | ALT_PATH | PATH_MIG_STATE | MIN_RNR_TIMER);

        allow(QpState.RTS, QpState.SQD);
        for (QpType t : QpType.values()) {
            opt(QpState.RTS, QpState.SQD, t, EN_SQD_ASYNC_NOTIFY);
        }

        allow(QpState.SQD, QpState.RTS);
        opt(QpState.SQD, QpState.RTS, QpType.UD, CUR_STATE | QKEY);
        opt(QpState.SQD, QpState.RTS, QpType.UC, CUR_STATE | ALT_PATH | ACCESS_FLAGS | PATH_MIG_STATE);
        opt(QpState.SQD, QpState.RTS, QpType.RC, CUR_STATE | ALT_PATH | ACCESS_FLAGS | MIN_RNR_TIMER | PATH_MIG_STATE);

        allow(QpState.SQD, QpState.SQD);
        opt(QpState.SQD, QpState.SQD, QpType.UD, PKEY_INDEX | QKEY);
        opt(QpState.SQD, QpState.SQD, QpType.UC, AV | ALT_PATH | ACCESS_FLAGS | PKEY_INDEX | PATH_MIG_STATE);
        opt(QpState.SQD, QpState.SQD, QpType.RC, PORT | AV | TIMEOUT | RETRY_CNT | RNR_RETRY | MAX_QP_RD_ATOMIC
                | MAX_DEST_RD_ATOMIC | ALT_PATH | ACCESS_FLAGS | PKEY_INDEX | MIN_RNR_TIMER | PATH_MIG_STATE);

        allow(QpState.SQE, QpState.RTS);
        opt(QpState.SQE, QpState.RTS, QpType.UD, CUR_STATE | QKEY);
        opt(QpState.SQE, QpState.RTS, QpType.UC, CUR_STATE | ACCESS_FLAGS);
    }

    private QpStateTable() {
    }

    @SuppressWarnings("unchecked")
    private static Map<QpType, Rule>[][] newRules() {
        Map<QpType, Rule>[][] r = new Map[N][N];
        for (int i = 0; i < N; i++) {
            for (int j = 0; j < N; j++) {
                r[i][j] = new EnumMap<>(QpType.class);
            }
        }
        return r;
    }

    private static void allow(QpState from, QpState to) {
        VALID[from.ordinal()][to.ordinal()] = true;
    }

    private static void req(QpState from, QpState to, QpType t, int mask) {
        Rule r = rule(from, to, t);
        RULES[from.ordinal()][to.ordinal()].put(t, new Rule(r.required | mask, r.optional));
    }

    private static void opt(QpState from, QpState to, QpType t, int mask) {
        Rule r = rule(from, to, t);
        RULES[from.ordinal()][to.ordinal()].put(t, new Rule(r.required, r.optional | mask));
    }

    /** Whether the table has the transition at all. */
    public static boolean exists(QpState from, QpState to) {
        return VALID[from.ordinal()][to.ordinal()];
    }

    /** The attributes the transition requires and accepts for {@code type} (both 0 when it needs none). */
    public static Rule rule(QpState from, QpState to, QpType type) {
        return RULES[from.ordinal()][to.ordinal()].getOrDefault(type, new Rule(0, 0));
    }

    /**
     * {@code ib_modify_qp_is_ok}: {@code CUR_STATE} only from RTR, RTS, SQD or SQE; the transition must exist; the
     * mask must hold every required attribute and nothing beyond the required, the optional and {@code STATE}.
     *
     * @return null when allowed, else why not
     */
    public static String check(QpState cur, QpState next, QpType type, int mask) {
        if ((mask & CUR_STATE) != 0 && cur != QpState.RTR && cur != QpState.RTS && cur != QpState.SQD
                && cur != QpState.SQE) {
            return "IB_QP_CUR_STATE is not accepted in state " + cur;
        }
        if (!exists(cur, next)) {
            return "no transition " + cur + " -> " + next;
        }
        Rule r = rule(cur, next, type);
        int missing = r.required & ~mask;
        if (missing != 0) {
            return type + " " + cur + " -> " + next + " requires " + QpAttrMask.toString(missing);
        }
        int extra = mask & ~(r.required | r.optional | STATE);
        if (extra != 0) {
            return type + " " + cur + " -> " + next + " does not accept " + QpAttrMask.toString(extra);
        }
        return null;
    }
}
