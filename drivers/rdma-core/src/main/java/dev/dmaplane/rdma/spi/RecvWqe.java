package dev.dmaplane.rdma.spi;

import dev.dmaplane.rdma.verbs.RecvWr;
import org.osgi.annotation.versioning.ProviderType;

/** A receive work queue entry taken by {@link HwQp#takeRecv()}, from the QP's receive queue or its SRQ. */
@ProviderType
public interface RecvWqe {
    long seq();

    RecvWr wr();

    default long wrId() {
        return wr().wrId();
    }

    /** Bytes the scatter list can hold. */
    long length();

    /** Whether it came from a shared receive queue. */
    boolean fromSrq();
}
