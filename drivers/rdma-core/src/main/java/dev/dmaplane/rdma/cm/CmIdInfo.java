package dev.dmaplane.rdma.cm;

import java.net.InetSocketAddress;

/**
 * One id as {@code rdma resource show cm_id} lists it ({@code fill_res_cm_id_entry}).
 *
 * @param device  the device, or null while unbound
 * @param port    the port, 0 while unbound
 * @param qpn     the QP the id carries, 0 without
 * @param ps      the port space
 * @param state   the {@code rdma_cm_state} name ({@code LISTEN}, {@code CONNECT}, ...)
 * @param src     the source address
 * @param dst     the destination address, or null
 */
public record CmIdInfo(String device, int port, int qpn, PortSpace ps, String state, InetSocketAddress src,
                       InetSocketAddress dst) {
    @Override
    public String toString() {
        return (device == null ? "" : "link " + device + "/" + port + " ") + (qpn == 0 ? "" : "lqpn " + qpn + " ")
                + "qp-type " + (ps == PortSpace.UDP ? "UD" : "RC") + " state " + state + " ps " + ps
                + " src-addr " + addr(src) + (dst == null ? "" : " dst-addr " + addr(dst));
    }

    private static String addr(InetSocketAddress a) {
        return a == null ? "0.0.0.0:0" : a.getAddress().getHostAddress() + ":" + a.getPort();
    }
}
