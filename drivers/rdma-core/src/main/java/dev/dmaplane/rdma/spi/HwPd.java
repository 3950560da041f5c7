package dev.dmaplane.rdma.spi;

import org.osgi.annotation.versioning.ProviderType;

/** A protection domain as the provider sees it. */
@ProviderType
public interface HwPd extends HwObject {
    /** Device-wide PD number. */
    int pdn();
}
