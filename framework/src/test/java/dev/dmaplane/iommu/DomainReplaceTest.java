package dev.dmaplane.iommu;

import dev.dmaplane.testing.Blocked;
import dev.dmaplane.testing.TestDevice;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;

/**
 * A domain switch of a group waits for the translations in flight through the old domain, as
 * {@code iommu_group_replace_domain} in drivers/iommu/iommu.c returns only once the driver's {@code attach_dev} has
 * synced its invalidation of the old context (e.g. arm-smmu-v3's CMD_SYNC after the STE update): after it, iommufd's
 * {@code iommufd_device_do_replace} may unmap and free the old domain, which no DMA walks any more.
 */
class DomainReplaceTest {
    private final Tracer tracer = new Tracer();
    private final Iommu iommu = new Iommu(true, IommuDomainType.DMA, tracer);
    private final TestDevice dev = new TestDevice("0000:03:00.0", 0x1da0, 1, 0x030200);
    private final IommuGroup group = iommu.addGroup(List.of(dev));

    @Test
    void aReplaceWaitsForTheTranslationInFlightThroughTheOldDomain() throws Exception {
        Object owner = new Object();
        group.claimDmaOwner(owner);
        IommuDomain a = iommu.allocDomain(IommuDomainType.UNMANAGED);
        IommuDomain b = iommu.allocDomain(IommuDomainType.UNMANAGED);
        group.attach(owner, a);
        IommuDomain walked = group.translating();
        Blocked.Call<Void> replace;
        try {
            assertSame(a, walked);
            replace = Blocked.run("replace", () -> group.attach(owner, b));
            replace.awaitBlockedIn("dev.dmaplane.iommu.IommuGroup.switchTo", "dev.dmaplane.iommu.IommuGroup.attach");
            assertFalse(replace.isDone(), "the replace waits for the translation through the old domain");
            assertSame(a, group.domain());
        } finally {
            group.translated();
        }
        replace.get();
        assertSame(b, group.domain(), "and then it moves the group");
        IommuDomain next = group.translating();
        try {
            assertSame(b, next, "the next translation goes through the new domain");
        } finally {
            group.translated();
        }
    }
}
