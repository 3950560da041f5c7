package dev.dmaplane.rdma.verbs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/** Queue pair states ({@code enum ib_qp_state}, {@code IBV_QPS_*}) with their numeric values. */
public enum QpState {
    RESET(0), INIT(1), RTR(2), RTS(3), SQD(4), SQE(5), ERR(6);

    private final int value;

    QpState(int value) {
        this.value = value;
    }

    public int value() {
        return value;
    }

    public static QpState of(int value) {
        for (QpState s : values()) {
            if (s.value == value) {
                return s;
            }
        }
        throw new ErrnoException(Errno.EINVAL, "no QP state " + value);
    }
}
