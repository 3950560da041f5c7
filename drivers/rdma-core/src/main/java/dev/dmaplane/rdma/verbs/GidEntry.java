package dev.dmaplane.rdma.verbs;

/**
 * One GID table entry as {@code ibv_query_gid_ex} returns it ({@code struct ibv_gid_entry}).
 *
 * @param index   the index in the port's table (the {@code sgid_index} of address vectors)
 * @param gid     the GID
 * @param type    RoCE v1 or v2 for Ethernet ports
 * @param portNum the port
 * @param netdev  the network device the GID came from
 */
public record GidEntry(int index, Gid gid, GidType type, int portNum, String netdev) {
}
