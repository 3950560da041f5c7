package dev.dmaplane.rdma.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * What a connect or accept carries ({@code struct iw_cm_conn_param}): private data for the MPA request or reply, and
 * the outbound and inbound RDMA READ depth of the QP (ORD, IRD).
 *
 * @param privateData bytes given to the peer in the MPA frame, at most {@value #MAX_PRIVATE_DATA}
 * @param ord         RDMA READs this side may have outstanding
 * @param ird         RDMA READs this side serves at once
 */
public record IwConnParam(byte[] privateData, int ord, int ird) {
    /** {@code MPA_MAX_PRIVDATA} of RFC 5044, section 7.1. */
    public static final int MAX_PRIVATE_DATA = 512;

    public IwConnParam {
        privateData = privateData == null ? new byte[0] : privateData.clone();
        if (privateData.length > MAX_PRIVATE_DATA) {
            throw new ErrnoException(Errno.EINVAL, "MPA private data of " + privateData.length + " bytes exceeds "
                    + MAX_PRIVATE_DATA);
        }
        if (ord < 0 || ird < 0) {
            throw new ErrnoException(Errno.EINVAL, "ORD " + ord + " / IRD " + ird + " must not be negative");
        }
    }

    @Override
    public byte[] privateData() {
        return privateData.clone();
    }
}
