package dev.dmaplane.rdma.verbs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/** Path MTUs ({@code enum ib_mtu}, {@code IBV_MTU_*}): enum value 1..5 for 256..4096 bytes. */
public enum Mtu {
    MTU_256(1, 256), MTU_512(2, 512), MTU_1024(3, 1024), MTU_2048(4, 2048), MTU_4096(5, 4096);

    /** Headers a RoCEv2 packet may carry besides the payload: GRH, UDP, BTH, XRC, AtomicETH, ICRC. */
    public static final int ROCE_HEADER_BYTES = 40 + 8 + 12 + 4 + 28 + 4;

    private final int value;
    private final int bytes;

    Mtu(int value, int bytes) {
        this.value = value;
        this.bytes = bytes;
    }

    public int value() {
        return value;
    }

    public int bytes() {
        return bytes;
    }

    public static Mtu of(int value) {
        for (Mtu m : values()) {
            if (m.value == value) {
                return m;
            }
        }
        throw new ErrnoException(Errno.EINVAL, "no IB MTU enum value " + value + " (1..5)");
    }

    /**
     * {@code iboe_get_mtu}: the largest IB MTU whose packets, with every RoCE header, fit an Ethernet MTU.
     *
     * @throws ErrnoException {@code EINVAL} when not even 256 bytes fit
     */
    public static Mtu fromNetdevMtu(int netdevMtu) {
        int payload = netdevMtu - ROCE_HEADER_BYTES;
        for (int i = values().length - 1; i >= 0; i--) {
            if (payload >= values()[i].bytes) {
                return values()[i];
            }
        }
        throw new ErrnoException(Errno.EINVAL, "netdev MTU " + netdevMtu + " is too small for RoCE");
    }
}
