package dev.dmaplane.rdma.mad;

/** How a MAD send ended ({@code ib_mad_send_wc.status}). */
public enum MadSendStatus {
    /** Sent (and answered, when it waited for a response): {@code IB_WC_SUCCESS}. */
    SUCCESS,
    /** No response after every retry: {@code IB_WC_RESP_TIMEOUT_ERR}. */
    TIMEOUT,
    /** Cancelled by the agent ({@code ib_cancel_mad}) or the agent went away: {@code IB_WC_WR_FLUSH_ERR}. */
    CANCELED,
    /** The port could not send it ({@code IB_WC_GENERAL_ERR}). */
    ERROR
}
