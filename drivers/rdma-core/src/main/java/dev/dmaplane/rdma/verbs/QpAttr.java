package dev.dmaplane.rdma.verbs;

/**
 * Queue pair attributes ({@code struct ibv_qp_attr}) together with the mask of those that are set
 * ({@code attr_mask}). {@link #builder()} sets the mask bit of every attribute it is given, so an attribute is
 * either given (and its bit set) or absent; {@link Builder#without} drops bits again. {@code ibv_query_qp} returns
 * the current attributes with every bit of what the QP holds.
 *
 * @param mask             {@link QpAttrMask} bits of the attributes present
 * @param qpState          target state ({@code STATE})
 * @param curQpState       the state the caller believes the QP is in ({@code CUR_STATE})
 * @param pathMtu          {@code PATH_MTU}
 * @param pathMigState     {@code PATH_MIG_STATE}
 * @param qkey             {@code QKEY}
 * @param rqPsn            {@code RQ_PSN}: 24 bits on InfiniBand and RoCE (wider values masked), 32 on iWARP
 * @param sqPsn            {@code SQ_PSN}: 24 bits on InfiniBand and RoCE (wider values masked), 32 on iWARP
 * @param destQpNum        {@code DEST_QPN}, 24 bits
 * @param qpAccessFlags    {@code ACCESS_FLAGS}: remote operations the QP accepts as responder
 * @param cap              {@code CAP}
 * @param ahAttr           {@code AV}: the primary path
 * @param altAhAttr        {@code ALT_PATH}: the alternate path
 * @param pkeyIndex        {@code PKEY_INDEX}
 * @param altPkeyIndex     {@code ALT_PATH}
 * @param enSqdAsyncNotify {@code EN_SQD_ASYNC_NOTIFY}: raise SQ_DRAINED when SQD is reached
 * @param sqDraining       query only: SQD not yet drained
 * @param maxRdAtomic      {@code MAX_QP_RD_ATOMIC}: RDMA reads/atomics outstanding as initiator
 * @param maxDestRdAtomic  {@code MAX_DEST_RD_ATOMIC}: responder resources
 * @param minRnrTimer      {@code MIN_RNR_TIMER}, 0..31
 * @param portNum          {@code PORT}
 * @param timeout          {@code TIMEOUT}, 0..31
 * @param retryCnt         {@code RETRY_CNT}, 0..7
 * @param rnrRetry         {@code RNR_RETRY}, 0..7
 * @param altPortNum       {@code ALT_PATH}
 * @param altTimeout       {@code ALT_PATH}
 * @param rateLimit        {@code RATE_LIMIT} (raw packet QPs only)
 */
public record QpAttr(int mask, QpState qpState, QpState curQpState, Mtu pathMtu, MigState pathMigState, int qkey,
                     int rqPsn, int sqPsn, int destQpNum, int qpAccessFlags, QpCap cap, AhAttr ahAttr,
                     AhAttr altAhAttr, int pkeyIndex, int altPkeyIndex, boolean enSqdAsyncNotify, boolean sqDraining,
                     int maxRdAtomic, int maxDestRdAtomic, int minRnrTimer, int portNum, int timeout, int retryCnt,
                     int rnrRetry, int altPortNum, int altTimeout, int rateLimit) {

    /** Whether every bit of {@code bits} is in the mask. */
    public boolean has(int bits) {
        return (mask & bits) == bits;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** A builder holding this record's values and mask. */
    public Builder toBuilder() {
        Builder b = new Builder();
        b.mask = mask;
        b.qpState = qpState;
        b.curQpState = curQpState;
        b.pathMtu = pathMtu;
        b.pathMigState = pathMigState;
        b.qkey = qkey;
        b.rqPsn = rqPsn;
        b.sqPsn = sqPsn;
        b.destQpNum = destQpNum;
        b.qpAccessFlags = qpAccessFlags;
        b.cap = cap;
        b.ahAttr = ahAttr;
        b.altAhAttr = altAhAttr;
        b.pkeyIndex = pkeyIndex;
        b.altPkeyIndex = altPkeyIndex;
        b.enSqdAsyncNotify = enSqdAsyncNotify;
        b.sqDraining = sqDraining;
        b.maxRdAtomic = maxRdAtomic;
        b.maxDestRdAtomic = maxDestRdAtomic;
        b.minRnrTimer = minRnrTimer;
        b.portNum = portNum;
        b.timeout = timeout;
        b.retryCnt = retryCnt;
        b.rnrRetry = rnrRetry;
        b.altPortNum = altPortNum;
        b.altTimeout = altTimeout;
        b.rateLimit = rateLimit;
        return b;
    }

    @Override
    public String toString() {
        return "qp_attr[" + QpAttrMask.toString(mask) + (has(QpAttrMask.STATE) ? " -> " + qpState : "") + "]";
    }

    /** Sets attributes together with their mask bits. */
    public static final class Builder {
        private int mask;
        private QpState qpState = QpState.RESET;
        private QpState curQpState = QpState.RESET;
        private Mtu pathMtu = Mtu.MTU_1024;
        private MigState pathMigState = MigState.MIGRATED;
        private int qkey;
        private int rqPsn;
        private int sqPsn;
        private int destQpNum;
        private int qpAccessFlags;
        private QpCap cap;
        private AhAttr ahAttr;
        private AhAttr altAhAttr;
        private int pkeyIndex;
        private int altPkeyIndex;
        private boolean enSqdAsyncNotify;
        private boolean sqDraining;
        private int maxRdAtomic;
        private int maxDestRdAtomic;
        private int minRnrTimer;
        private int portNum;
        private int timeout;
        private int retryCnt;
        private int rnrRetry;
        private int altPortNum;
        private int altTimeout;
        private int rateLimit;

        private Builder() {
        }

        public Builder state(QpState v) { qpState = v; mask |= QpAttrMask.STATE; return this; }
        public Builder curState(QpState v) { curQpState = v; mask |= QpAttrMask.CUR_STATE; return this; }
        public Builder enSqdAsyncNotify(boolean v) { enSqdAsyncNotify = v; mask |= QpAttrMask.EN_SQD_ASYNC_NOTIFY; return this; }
        public Builder accessFlags(int v) { qpAccessFlags = v; mask |= QpAttrMask.ACCESS_FLAGS; return this; }
        public Builder pkeyIndex(int v) { pkeyIndex = v; mask |= QpAttrMask.PKEY_INDEX; return this; }
        public Builder port(int v) { portNum = v; mask |= QpAttrMask.PORT; return this; }
        public Builder qkey(int v) { qkey = v; mask |= QpAttrMask.QKEY; return this; }
        public Builder av(AhAttr v) { ahAttr = v; mask |= QpAttrMask.AV; return this; }
        public Builder pathMtu(Mtu v) { pathMtu = v; mask |= QpAttrMask.PATH_MTU; return this; }
        public Builder timeout(int v) { timeout = v; mask |= QpAttrMask.TIMEOUT; return this; }
        public Builder retryCnt(int v) { retryCnt = v; mask |= QpAttrMask.RETRY_CNT; return this; }
        public Builder rnrRetry(int v) { rnrRetry = v; mask |= QpAttrMask.RNR_RETRY; return this; }
        public Builder rqPsn(int v) { rqPsn = v; mask |= QpAttrMask.RQ_PSN; return this; }
        public Builder maxRdAtomic(int v) { maxRdAtomic = v; mask |= QpAttrMask.MAX_QP_RD_ATOMIC; return this; }
        public Builder minRnrTimer(int v) { minRnrTimer = v; mask |= QpAttrMask.MIN_RNR_TIMER; return this; }
        public Builder sqPsn(int v) { sqPsn = v; mask |= QpAttrMask.SQ_PSN; return this; }
        public Builder maxDestRdAtomic(int v) { maxDestRdAtomic = v; mask |= QpAttrMask.MAX_DEST_RD_ATOMIC; return this; }
        public Builder pathMigState(MigState v) { pathMigState = v; mask |= QpAttrMask.PATH_MIG_STATE; return this; }
        public Builder cap(QpCap v) { cap = v; mask |= QpAttrMask.CAP; return this; }
        public Builder destQpn(int v) { destQpNum = v; mask |= QpAttrMask.DEST_QPN; return this; }
        public Builder rateLimit(int v) { rateLimit = v; mask |= QpAttrMask.RATE_LIMIT; return this; }

        /** {@code ALT_PATH}: the alternate address vector, P_Key index, port and timeout together. */
        public Builder altPath(AhAttr av, int altPkey, int altPort, int altTmo) {
            altAhAttr = av;
            altPkeyIndex = altPkey;
            altPortNum = altPort;
            altTimeout = altTmo;
            mask |= QpAttrMask.ALT_PATH;
            return this;
        }

        /** Query only: sets whether SQD is still draining (no mask bit). */
        public Builder sqDraining(boolean v) { sqDraining = v; return this; }

        /** Clears mask bits (the values stay, unused). */
        public Builder without(int bits) {
            mask &= ~bits;
            return this;
        }

        /** The mask so far. */
        public int mask() {
            return mask;
        }

        public QpAttr build() {
            return new QpAttr(mask, qpState, curQpState, pathMtu, pathMigState, qkey, rqPsn, sqPsn, destQpNum,
                    qpAccessFlags, cap, ahAttr, altAhAttr, pkeyIndex, altPkeyIndex, enSqdAsyncNotify, sqDraining,
                    maxRdAtomic, maxDestRdAtomic, minRnrTimer, portNum, timeout, retryCnt, rnrRetry, altPortNum,
                    altTimeout, rateLimit);
        }
    }
}
