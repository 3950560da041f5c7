package dev.dmaplane.rdma.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.net.InetAddress;
import java.util.List;

/**
 * The network device under a RoCE port: what {@code roce_gid_mgmt} reads to fill the GID table (the MAC gives the
 * default GID, each IP address one more), and its MTU.
 *
 * @param name      interface name, e.g. {@code eth0}
 * @param mac       6-byte MAC address
 * @param mtu       Ethernet MTU
 * @param addresses IPv4 and IPv6 addresses, in the order they were added
 */
public record NetdevInfo(String name, byte[] mac, int mtu, List<InetAddress> addresses) {
    public NetdevInfo {
        if (name == null || name.isBlank() || mac == null || mac.length != 6 || mtu < 68) {
            throw new ErrnoException(Errno.EINVAL, "a netdev needs a name, a 6-byte MAC and an MTU >= 68");
        }
        mac = mac.clone();
        addresses = List.copyOf(addresses);
    }

    @Override
    public byte[] mac() {
        return mac.clone();
    }

    /**
     * {@code addrconf_addr_eui48}: the MAC as a modified EUI-64 (the universal/local bit flipped, {@code ff:fe} in
     * the middle), big-endian; the node and system image GUID rxe and siw give their device.
     */
    public long eui48() {
        byte[] eui = {(byte) (mac[0] ^ 0x02), mac[1], mac[2], (byte) 0xff, (byte) 0xfe, mac[3], mac[4], mac[5]};
        long guid = 0;
        for (byte b : eui) {
            guid = guid << 8 | (b & 0xff);
        }
        return guid;
    }
}
