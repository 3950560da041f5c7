package dev.dmaplane.rdma.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.Gid;

/**
 * A UD datagram of the GSI (QP1) as the provider moves it: what the GRH, BTH and DETH of a MAD packet carry
 * ({@code rxe_hdr.h}) and the MAD itself.
 *
 * @param port         the port, 1-based
 * @param sgid         source GID
 * @param dgid         destination GID
 * @param srcQpn       source QP (1)
 * @param destQpn      destination QP (1 for another GSI)
 * @param qkey         the DETH Q_Key ({@code IB_QP1_QKEY} to a GSI)
 * @param pkey         the BTH P_Key
 * @param trafficClass the GRH traffic class
 * @param hopLimit     the GRH hop limit
 * @param mad          the 256 bytes of the MAD
 */
public record MadDatagram(int port, Gid sgid, Gid dgid, int srcQpn, int destQpn, int qkey, int pkey,
                          int trafficClass, int hopLimit, byte[] mad) {
    public MadDatagram {
        ErrnoException.requireNonNull(sgid, "MAD datagram sgid");
        ErrnoException.requireNonNull(dgid, "MAD datagram dgid");
        if (mad == null || mad.length != 256) {
            throw new ErrnoException(Errno.EINVAL, "a MAD datagram carries 256 bytes, not "
                    + (mad == null ? "none" : mad.length));
        }
        mad = mad.clone();
    }

    @Override
    public byte[] mad() {
        return mad.clone();
    }
}
