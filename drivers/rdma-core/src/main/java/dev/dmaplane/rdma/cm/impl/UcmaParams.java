package dev.dmaplane.rdma.cm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.PortSpace;
import dev.dmaplane.rdma.verbs.DeviceAttr;

/**
 * What librdmacm does to a {@code struct rdma_conn_param} before {@code rdma_connect} or {@code rdma_accept} reach
 * the kernel ({@code librdmacm/cma.c}): {@code ucma_valid_param} refuses, in the TCP port space, responder resources
 * above the device's {@code max_qp_rd_atom} and an initiator depth above its {@code max_qp_init_rd_atom} with EINVAL,
 * except {@code RDMA_MAX_RESP_RES} and {@code RDMA_MAX_INIT_DEPTH} (255), which stand for the device's maximum (on
 * accept: the request's value, at most the maximum). Neither the kernel's rdma_cm nor the iw_cm caps the depths; a
 * driver sees what passes here.
 */
final class UcmaParams {
    /** {@code RDMA_MAX_RESP_RES} and {@code RDMA_MAX_INIT_DEPTH}. */
    static final int MAX = 0xFF;

    private UcmaParams() {
    }

    /** {@code rdma_connect}: checked, 255 replaced by the device's maximum. */
    static ConnParam connect(PortSpace ps, DeviceAttr a, ConnParam p) {
        check("rdma_connect", ps, a, p);
        return with(p, p.responderResources() == MAX ? a.maxQpRdAtom() : p.responderResources(),
                p.initiatorDepth() == MAX ? a.maxQpInitRdAtom() : p.initiatorDepth());
    }

    /**
     * {@code rdma_accept}: checked, 255 replaced by what the request asked ({@code responderResources},
     * {@code initiatorDepth} of its CONNECT_REQUEST) within the device's maximum.
     */
    static ConnParam accept(PortSpace ps, DeviceAttr a, ConnParam p, int responderResources, int initiatorDepth) {
        check("rdma_accept", ps, a, p);
        return with(p, p.responderResources() == MAX ? Math.min(responderResources, a.maxQpRdAtom())
                : p.responderResources(), p.initiatorDepth() == MAX ? Math.min(initiatorDepth, a.maxQpInitRdAtom())
                : p.initiatorDepth());
    }

    /** {@code ucma_valid_param}. */
    private static void check(String call, PortSpace ps, DeviceAttr a, ConnParam p) {
        if (ps != PortSpace.TCP) {
            return;
        }
        if (p.responderResources() != MAX && p.responderResources() > a.maxQpRdAtom()) {
            throw new ErrnoException(Errno.EINVAL, call + ": responder_resources " + p.responderResources()
                    + " above the device's max_qp_rd_atom " + a.maxQpRdAtom());
        }
        if (p.initiatorDepth() != MAX && p.initiatorDepth() > a.maxQpInitRdAtom()) {
            throw new ErrnoException(Errno.EINVAL, call + ": initiator_depth " + p.initiatorDepth()
                    + " above the device's max_qp_init_rd_atom " + a.maxQpInitRdAtom());
        }
    }

    private static ConnParam with(ConnParam p, int responderResources, int initiatorDepth) {
        if (responderResources == p.responderResources() && initiatorDepth == p.initiatorDepth()) {
            return p;
        }
        return new ConnParam(p.privateData(), responderResources, initiatorDepth, p.flowControl(), p.retryCount(),
                p.rnrRetryCount(), p.srq(), p.qpNum());
    }
}
