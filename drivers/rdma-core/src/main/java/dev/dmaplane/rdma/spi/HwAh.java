package dev.dmaplane.rdma.spi;

import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.GidEntry;
import org.osgi.annotation.versioning.ProviderType;

/** An address handle as the provider sees it, with its source GID resolved from the GID table. */
@ProviderType
public interface HwAh extends HwObject {
    HwPd pd();

    AhAttr attr();

    /** The entry of the port's GID table that {@code attr().grh().sgidIndex()} named when the AH was created. */
    GidEntry sgid();
}
