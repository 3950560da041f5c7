package dev.dmaplane.rdma.spi;

import dev.dmaplane.rdma.verbs.SrqAttr;
import org.osgi.annotation.versioning.ProviderType;

/**
 * A shared receive queue as the provider sees it. Receive work requests are taken from it through
 * {@link HwQp#takeRecv()} of a QP attached to it, which also raises the limit event.
 */
@ProviderType
public interface HwSrq extends HwObject {
    int srqn();

    HwPd pd();

    /** Current attributes: max_wr, max_sge, armed limit. */
    SrqAttr attr();

    /** Work requests waiting. */
    int queued();
}
