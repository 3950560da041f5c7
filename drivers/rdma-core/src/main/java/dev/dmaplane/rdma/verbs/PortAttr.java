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
 * @param pkeyTblLen   P_Key table size (1 on RoCE: the default P_Key; 0 on iWARP, which has no partitions)
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
        if (gidTblLen < 1 || pkeyTblLen < 0 || maxMsgSize < 1) {
            throw new ErrnoException(Errno.EINVAL, "port attributes need a GID table (" + gidTblLen
                    + "), a P_Key table of 0 or more entries (" + pkeyTblLen + ") and messages of a byte or more ("
                    + maxMsgSize + ")");
        }
    }

    /** {@code IB_PORT_CM_SUP}: the port has a connection manager. */
    public static final int CAP_CM_SUP = 1 << 16;
    /** {@code IB_PORT_DEVICE_MGMT_SUP}. */
    public static final int CAP_DEVICE_MGMT_SUP = 1 << 19;

    /**
     * An iWARP port as {@code siw_query_port} reports it: link layer Ethernet (no InfiniBand protocol on it), no
     * P_Keys, connection manager and device management supported, messages up to {@code 2^32 - 1} bytes.
     */
    public static PortAttr iwarp(PortState state, Mtu mtu, int gidTblLen) {
        return new PortAttr(state, mtu, mtu, gidTblLen, 0, CAP_CM_SUP | CAP_DEVICE_MGMT_SUP, 0xFFFF_FFFFL, 0,
                LinkLayer.ETHERNET, state == PortState.ACTIVE ? PHYS_LINK_UP : PHYS_DISABLED, 1, 1);
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
