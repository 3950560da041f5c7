package dev.dmaplane.rdma.verbs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * Port attributes ({@code struct ibv_port_attr}), the subset a RoCE port has: state, MTUs, table sizes, link.
 *
 * @param state        logical state
 * @param maxMtu       largest MTU the port supports
 * @param activeMtu    MTU in use (from the netdev MTU on RoCE)
 * @param gidTblLen    GID table size
 * @param pkeyTblLen   P_Key table size (1 on RoCE: the default P_Key)
 * @param portCapFlags {@code IB_PORT_*} capability bits
 * @param maxMsgSize   largest message
 * @param lid          0 on RoCE
 * @param linkLayer    ETHERNET for RoCE
 * @param physState    5 (LINK_UP) or 3 (DISABLED)
 * @param activeSpeed  {@code IB_SPEED_*}
 * @param activeWidth  {@code IB_WIDTH_*}
 */
public record PortAttr(PortState state, Mtu maxMtu, Mtu activeMtu, int gidTblLen, int pkeyTblLen, int portCapFlags,
                       long maxMsgSize, int lid, LinkLayer linkLayer, int physState, int activeSpeed, int activeWidth) {
    /** {@code IB_PORT_PHYS_STATE_LINK_UP}. */
    public static final int PHYS_LINK_UP = 5;
    /** {@code IB_PORT_PHYS_STATE_DISABLED}. */
    public static final int PHYS_DISABLED = 3;

    public PortAttr {
        if (state == null || maxMtu == null || activeMtu == null || linkLayer == null) {
            throw new ErrnoException(Errno.EINVAL, "port attributes need a state, MTUs and a link layer");
        }
        if (activeMtu.value() > maxMtu.value()) {
            throw new ErrnoException(Errno.EINVAL, "active MTU " + activeMtu + " exceeds max MTU " + maxMtu);
        }
        if (gidTblLen < 1 || pkeyTblLen < 1 || maxMsgSize < 1) {
            throw new ErrnoException(Errno.EINVAL, "port tables need at least one entry and messages at least one byte");
        }
    }

    /** A RoCE port: link layer Ethernet, LID 0, one P_Key, 2 GiB messages. */
    public static PortAttr roce(PortState state, Mtu maxMtu, Mtu activeMtu, int gidTblLen) {
        return new PortAttr(state, maxMtu, activeMtu, gidTblLen, 1, 0, 1L << 31, 0, LinkLayer.ETHERNET,
                state == PortState.ACTIVE ? PHYS_LINK_UP : PHYS_DISABLED, 1, 1);
    }

    /** The same attributes in another state. */
    public PortAttr withState(PortState s) {
        return new PortAttr(s, maxMtu, activeMtu, gidTblLen, pkeyTblLen, portCapFlags, maxMsgSize, lid, linkLayer,
                s == PortState.ACTIVE ? PHYS_LINK_UP : PHYS_DISABLED, activeSpeed, activeWidth);
    }
}
