package dev.dmaplane.rdma.verbs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.net.Inet4Address;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Arrays;
import java.util.HexFormat;

/**
 * A 128-bit global identifier ({@code union ibv_gid}), in network byte order. On RoCE a GID is an IPv6 address:
 * an IPv4 address becomes the IPv4-mapped {@code ::ffff:a.b.c.d} ({@code ipv6_addr_set_v4mapped}), and the
 * default GID is the link-local address built from the MAC ({@code rdma_make_default_gid}).
 */
public final class Gid {
    /** The all-zero GID of an empty table entry. */
    public static final Gid ZERO = new Gid(new byte[16]);

    private final byte[] raw;

    private Gid(byte[] raw) {
        this.raw = raw;
    }

    /** The GID with these 16 bytes. */
    public static Gid of(byte[] raw) {
        if (raw == null || raw.length != 16) {
            throw new ErrnoException(Errno.EINVAL, "a GID has 16 bytes, not " + (raw == null ? "none" : raw.length));
        }
        return new Gid(raw.clone());
    }

    /** The GID of an IP address: IPv6 as is, IPv4 mapped into {@code ::ffff:0:0/96}. */
    public static Gid of(InetAddress ip) {
        byte[] a = ip.getAddress();
        if (ip instanceof Inet6Address) {
            return new Gid(a);
        }
        byte[] g = new byte[16];
        g[10] = (byte) 0xFF;
        g[11] = (byte) 0xFF;
        System.arraycopy(a, 0, g, 12, 4);
        return new Gid(g);
    }

    /**
     * The default GID of a port ({@code rdma_make_default_gid}): {@code fe80::/64} with the modified EUI-64 of the
     * MAC ({@code addrconf_ifid_eui48}: the universal/local bit flipped, {@code ff:fe} in the middle).
     */
    public static Gid linkLocal(byte[] mac) {
        if (mac == null || mac.length != 6) {
            throw new ErrnoException(Errno.EINVAL, "a MAC address has 6 bytes");
        }
        byte[] g = new byte[16];
        g[0] = (byte) 0xFE;
        g[1] = (byte) 0x80;
        g[8] = (byte) (mac[0] ^ 0x02);
        g[9] = mac[1];
        g[10] = mac[2];
        g[11] = (byte) 0xFF;
        g[12] = (byte) 0xFE;
        g[13] = mac[3];
        g[14] = mac[4];
        g[15] = mac[5];
        return new Gid(g);
    }

    /** Parses the textual IPv6 form ({@code "fe80::1"}, {@code "::ffff:10.0.0.1"}). */
    public static Gid parse(String text) {
        try {
            if (text == null || text.indexOf(':') < 0) {
                throw new ErrnoException(Errno.EINVAL, "not a GID: '" + text + "'");
            }
            return of(InetAddress.getByName(text));
        } catch (UnknownHostException e) {
            throw new ErrnoException(Errno.EINVAL, "not a GID: '" + text + "'", e);
        }
    }

    /** The 16 bytes. */
    public byte[] raw() {
        return raw.clone();
    }

    /** Whether this is an IPv4-mapped GID ({@code ipv6_addr_v4mapped}). */
    public boolean isIpv4Mapped() {
        for (int i = 0; i < 10; i++) {
            if (raw[i] != 0) {
                return false;
            }
        }
        return raw[10] == (byte) 0xFF && raw[11] == (byte) 0xFF;
    }

    /** The IP address the GID stands for: IPv4 for a mapped GID, else IPv6. */
    public InetAddress toInetAddress() {
        try {
            return isIpv4Mapped() ? Inet4Address.getByAddress(Arrays.copyOfRange(raw, 12, 16))
                    : Inet6Address.getByAddress(null, raw, null);
        } catch (UnknownHostException e) {
            throw new IllegalStateException(e);
        }
    }

    public boolean isZero() {
        return equals(ZERO);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Gid g && Arrays.equals(raw, g.raw);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(raw);
    }

    /** The colon-separated hex form {@code ibv_devinfo -v} prints, e.g. {@code 0000:0000:0000:0000:0000:ffff:0a00:0001}. */
    @Override
    public String toString() {
        String h = HexFormat.of().formatHex(raw);
        StringBuilder sb = new StringBuilder(39);
        for (int i = 0; i < 32; i += 4) {
            if (i > 0) {
                sb.append(':');
            }
            sb.append(h, i, i + 4);
        }
        return sb.toString();
    }
}
