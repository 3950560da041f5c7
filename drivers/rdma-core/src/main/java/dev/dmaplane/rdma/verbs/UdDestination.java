package dev.dmaplane.rdma.verbs;

/**
 * Where a UD send goes ({@code wr.ud} of {@code struct ibv_send_wr}): the address handle, the remote QP number
 * and its Q_Key (if the Q_Key's high bit is set, the sending QP's own Q_Key is used instead).
 */
public record UdDestination(AddressHandle ah, int remoteQpn, int remoteQkey) {
}
