package dev.dmaplane.rdma.spi;

import dev.dmaplane.rdma.verbs.MwType;
import org.osgi.annotation.versioning.ProviderType;

/** A memory window as the provider sees it. Binding and invalidation are done by {@link MemoryAccess#executeLocal}. */
@ProviderType
public interface HwMw extends HwObject {
    MwType type();

    HwPd pd();

    int rkey();

    /** Whether a region is bound (a valid type 1 window may be bound to nothing). */
    boolean isBound();
}
