package dev.dmaplane.rdma.verbs;

/** Asynchronous event types ({@code enum ib_event_type}, {@code IBV_EVENT_*}) with their numeric values. */
public enum EventType {
    CQ_ERR(0, Scope.CQ),
    QP_FATAL(1, Scope.QP),
    QP_REQ_ERR(2, Scope.QP),
    QP_ACCESS_ERR(3, Scope.QP),
    COMM_EST(4, Scope.QP),
    SQ_DRAINED(5, Scope.QP),
    PATH_MIG(6, Scope.QP),
    PATH_MIG_ERR(7, Scope.QP),
    DEVICE_FATAL(8, Scope.DEVICE),
    PORT_ACTIVE(9, Scope.PORT),
    PORT_ERR(10, Scope.PORT),
    LID_CHANGE(11, Scope.PORT),
    PKEY_CHANGE(12, Scope.PORT),
    SM_CHANGE(13, Scope.PORT),
    SRQ_ERR(14, Scope.SRQ),
    SRQ_LIMIT_REACHED(15, Scope.SRQ),
    QP_LAST_WQE_REACHED(16, Scope.QP),
    CLIENT_REREGISTER(17, Scope.PORT),
    GID_CHANGE(18, Scope.PORT),
    WQ_FATAL(19, Scope.QP);

    /** What the event is about ({@code element} of {@code struct ibv_async_event}). */
    public enum Scope { CQ, QP, SRQ, PORT, DEVICE }

    private final int value;
    private final Scope scope;

    EventType(int value, Scope scope) {
        this.value = value;
        this.scope = scope;
    }

    public int value() {
        return value;
    }

    public Scope scope() {
        return scope;
    }

    /** Affiliated events name one object, which cannot be destroyed until the event is acknowledged. */
    public boolean affiliated() {
        return scope == Scope.CQ || scope == Scope.QP || scope == Scope.SRQ;
    }
}
