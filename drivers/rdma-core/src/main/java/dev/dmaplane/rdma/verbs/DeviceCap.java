package dev.dmaplane.rdma.verbs;

/** Device capabilities ({@code enum ib_device_cap_flags} and kernel caps) the core and applications look at. */
public enum DeviceCap {
    /** QP work request counts may be resized. */
    RESIZE_MAX_WR,
    /** {@code IB_QP_CUR_STATE} may be given to modify_qp. */
    CURR_QP_STATE_MOD,
    /** The device reports PORT_ACTIVE events. */
    PORT_ACTIVE_EVENT,
    /** {@code sys_image_guid} is meaningful. */
    SYS_IMAGE_GUID,
    /** RC QPs generate RNR NAKs. */
    RC_RNR_NAK_GEN,
    /** SRQs may be resized ({@code IBV_SRQ_MAX_WR}). */
    SRQ_RESIZE,
    /** CQs support {@code req_notify} with solicited-only and next-completion arming. */
    N_NOTIFY_CQ,
    /** Memory windows (type 1). */
    MEM_WINDOW,
    /** Type 2B memory windows (bound to a QP). */
    MEM_WINDOW_TYPE_2B,
    /** Fast registration, local invalidate, send with invalidate. */
    MEM_MGT_EXTENSIONS,
    /** On-demand paging of memory regions ({@code IBK_ON_DEMAND_PAGING}). */
    ON_DEMAND_PAGING
}
