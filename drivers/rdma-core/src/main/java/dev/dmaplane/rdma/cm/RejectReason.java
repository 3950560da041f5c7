package dev.dmaplane.rdma.cm;

/** The IB CM reject reasons a REJECTED event carries as its status ({@code enum ib_cm_rej_reason}, IBTA 12.6.7.2). */
public final class RejectReason {
    public static final int NO_QP = 1;
    public static final int NO_RESOURCES = 3;
    public static final int TIMEOUT = 4;
    public static final int INVALID_COMM_ID = 6;
    public static final int INVALID_SERVICE_ID = 8;
    public static final int STALE_CONN = 10;
    public static final int CONSUMER_DEFINED = 28;

    private RejectReason() {
    }
}
