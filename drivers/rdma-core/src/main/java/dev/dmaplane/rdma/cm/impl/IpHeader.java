package dev.dmaplane.rdma.cm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Arrays;

/**
 * The rdma_cm's header in front of a REQ's private data ({@code struct cma_hdr}, IBTA annex A11 "RDMA IP CM
 * Service"): version 0.0, IP version 4 in the upper nibble, the source port, then the source and destination
 * addresses as 16-byte fields (IPv4 in the last four bytes). {@value #SIZE} bytes, so a REQ carries at most
 * {@value #USER_MAX} bytes of the user's.
 *
 * @param srcPort the active side's port
 * @param src     the active side's address
 * @param dst     the address the REQ is for
 */
record IpHeader(int srcPort, InetAddress src, InetAddress dst) {
    static final int SIZE = 36;
    static final int USER_MAX = CmMessages.REQ_PRIVATE - SIZE;

    /** The header followed by {@code user}: the REQ's private data ({@code cma_format_hdr}). */
    byte[] prepend(byte[] user) {
        if (user.length > USER_MAX) {
            throw new ErrnoException(Errno.EINVAL, "rdma_connect: private data of " + user.length
                    + " bytes, over " + USER_MAX + " (a REQ's 92 less the rdma_cm header's 36)");
        }
        byte[] b = new byte[SIZE + user.length];
        b[0] = 0x00;
        b[1] = 0x40;
        b[2] = (byte) (srcPort >> 8);
        b[3] = (byte) srcPort;
        System.arraycopy(src.getAddress(), 0, b, 4 + 12, 4);
        System.arraycopy(dst.getAddress(), 0, b, 20 + 12, 4);
        System.arraycopy(user, 0, b, SIZE, user.length);
        return b;
    }

    /** The header of a REQ's private data, or null when it is not an rdma_cm IPv4 header of version 0. */
    static IpHeader parse(byte[] priv) {
        if (priv.length < SIZE || priv[0] != 0 || (priv[1] & 0xF0) != 0x40) {
            return null;
        }
        try {
            return new IpHeader((priv[2] & 0xFF) << 8 | (priv[3] & 0xFF),
                    InetAddress.getByAddress(Arrays.copyOfRange(priv, 16, 20)),
                    InetAddress.getByAddress(Arrays.copyOfRange(priv, 32, 36)));
        } catch (UnknownHostException e) {
            throw new ErrnoException(Errno.EINVAL, "rdma_cm header with a bad address", e);
        }
    }
}
