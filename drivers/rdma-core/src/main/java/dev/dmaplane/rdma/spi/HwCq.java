package dev.dmaplane.rdma.spi;

import org.osgi.annotation.versioning.ProviderType;

/**
 * A completion queue as the provider sees it. The core owns the ring: completions reach it through
 * {@link HwQp#completeSend} and {@link HwQp#completeRecv}, which also handle overrun and notification.
 */
@ProviderType
public interface HwCq extends HwObject {
    int cqn();

    /** Capacity. */
    int cqe();

    /** Completions not yet polled. */
    int pending();

    /** The completion vector chosen at creation. */
    int compVector();
}
