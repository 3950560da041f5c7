package dev.dmaplane.rdma.cm;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * {@code struct rdma_conn_param}: what {@code rdma_connect} and {@code rdma_accept} send, and what a
 * CONNECT_REQUEST, CONNECT_RESPONSE, ESTABLISHED or REJECTED event received.
 *
 * @param privateData        the user's private data: at most 255 bytes ({@code private_data_len} is a {@code u8},
 *                           so more cannot be given: EINVAL here), and at most what the transport's message holds
 *                           ({@code rdma_connect} and {@code rdma_accept} refuse more with EINVAL: on InfiniBand and
 *                           RoCE 56 bytes in a REQ, 196 in a REP; an iWARP MPA request or reply holds the 255)
 * @param responderResources RDMA READs and atomics the local end accepts at once (0..255); at most the device's
 *                           {@code max_qp_rd_atom} in the TCP port space, 255 ({@code RDMA_MAX_RESP_RES}) being
 *                           that maximum
 * @param initiatorDepth     RDMA READs and atomics the local end issues at once (0..255); at most the device's
 *                           {@code max_qp_init_rd_atom}, 255 ({@code RDMA_MAX_INIT_DEPTH}) being that maximum
 * @param flowControl        end-to-end flow control (0 or 1)
 * @param retryCount         transport retries (0..7)
 * @param rnrRetryCount      RNR retries (0..7; 7 is forever)
 * @param srq                whether the QP uses an SRQ
 * @param qpNum              the QP number when the id has no QP of its own; in an event, the remote QP
 */
public record ConnParam(byte[] privateData, int responderResources, int initiatorDepth, int flowControl,
                        int retryCount, int rnrRetryCount, boolean srq, int qpNum) {
    public ConnParam {
        privateData = privateData == null ? new byte[0] : privateData.clone();
        check("private_data_len", privateData.length, MAX_PRIVATE_DATA);
        check("responder_resources", responderResources, 255);
        check("initiator_depth", initiatorDepth, 255);
        check("flow_control", flowControl, 1);
        check("retry_count", retryCount, 7);
        check("rnr_retry_count", rnrRetryCount, 7);
        check("qp_num", qpNum, 0xFF_FFFF);
    }

    /** The most private data {@code struct rdma_conn_param} can carry: its {@code private_data_len} is a {@code u8}. */
    public static final int MAX_PRIVATE_DATA = 255;

    private static void check(String what, int v, int max) {
        if (v < 0 || v > max) {
            throw new ErrnoException(Errno.EINVAL, "rdma_conn_param " + what + " " + v + " outside 0.." + max);
        }
    }

    /** Private data and resources, retry 7 and RNR retry 7, as perftest and most rdma_cm users ask. */
    public static ConnParam of(byte[] privateData, int responderResources, int initiatorDepth) {
        return new ConnParam(privateData, responderResources, initiatorDepth, 1, 7, 7, false, 0);
    }

    @Override
    public byte[] privateData() {
        return privateData.clone();
    }
}
