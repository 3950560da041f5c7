package dev.dmaplane.rdma.mad;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.Gid;

/**
 * Where a MAD goes or came from ({@code struct ib_mad_send_buf}'s address handle and remote QP, {@code struct
 * ib_wc} with its GRH on receive): on RoCE the GIDs of both ends, the remote QP (1 for the GSI) and its Q_Key.
 *
 * @param localGid     the GID of this port the MAD leaves from or arrived at
 * @param remoteGid    the other end's GID
 * @param remoteQpn    the other end's QP (1: its GSI)
 * @param qkey         the Q_Key ({@value #GSI_QKEY} for the GSI)
 * @param pkeyIndex    the P_Key table index the MAD uses
 * @param trafficClass the GRH traffic class
 * @param hopLimit     the GRH hop limit
 */
public record MadAddress(Gid localGid, Gid remoteGid, int remoteQpn, int qkey, int pkeyIndex, int trafficClass,
                         int hopLimit) {
    /** {@code IB_QP1_QKEY}: the Q_Key of every GSI. */
    public static final int GSI_QKEY = 0x80010000;

    public MadAddress {
        ErrnoException.requireNonNull(localGid, "MAD local GID");
        ErrnoException.requireNonNull(remoteGid, "MAD remote GID");
    }

    /** To the GSI (QP1) of {@code remoteGid}, from {@code localGid}, P_Key index 0, hop limit 64. */
    public static MadAddress gsi(Gid localGid, Gid remoteGid) {
        return new MadAddress(localGid, remoteGid, 1, GSI_QKEY, 0, 0, 64);
    }
}
