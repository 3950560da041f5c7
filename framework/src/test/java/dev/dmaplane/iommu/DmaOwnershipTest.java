package dev.dmaplane.iommu;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.DriverManagedDma;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.testing.TestDevice;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * User-space DMA ownership of an IOMMU group as {@code iommu_group_claim_dma_owner} in drivers/iommu/iommu.c grants
 * it: refused with {@code EPERM} while {@code group->owner_cnt} is held, by another owner or by a kernel driver bound
 * to a member (which uses the default domain, {@code iommu_device_use_default_domain}); a driver that sets
 * {@code driver_managed_dma} (vfio-pci) takes no such count, so the group may be claimed with it bound.
 */
class DmaOwnershipTest {
    private final Tracer tracer = new Tracer();
    private final DeviceCore core = new DeviceCore(tracer);
    private final Iommu iommu = new Iommu(true, IommuDomainType.DMA, tracer);
    private final TestDevice a = new TestDevice("0000:03:00.0", 0x1da0, 1, 0x030200);
    private final TestDevice b = new TestDevice("0000:04:00.0", 0x1da0, 2, 0x020700);
    private final IommuGroup group = iommu.addGroup(List.of(a, b));

    private record Named(String name, int deviceId) implements Driver {
        @Override
        public MatchTable matchTable() {
            return MatchTable.of(MatchEntry.Pci.of(0x1da0, deviceId));
        }

        @Override
        public BoundDevice probe(Device device, MatchEntry match) {
            return () -> { };
        }
    }

    private record Managed(String name, int deviceId) implements DriverManagedDma {
        @Override
        public MatchTable matchTable() {
            return MatchTable.of(MatchEntry.Pci.of(0x1da0, deviceId));
        }

        @Override
        public BoundDevice probe(Device device, MatchEntry match) {
            return () -> { };
        }
    }

    @Test
    void aKernelDriverOnAnyMemberMakesTheClaimEperm() {
        core.addDevice(a, null);
        core.addDevice(b, null);
        core.registerDriver(new Named("rxe", 2));
        assertFalse(group.dmaOwnerClaimable());
        Object owner = new Object();
        ErrnoException e = assertThrows(ErrnoException.class, () -> group.claimDmaOwner(owner));
        assertEquals(Errno.EPERM, e.errno());
        assertTrue(e.getMessage().contains("0000:04:00.0"), e.getMessage());
        assertSame(group.defaultDomain(), group.domain(), "a refused claim changes nothing");
    }

    @Test
    void membersBoundToADriverManagingDmaOrUnboundLetTheClaimThrough() {
        core.addDevice(a, null);
        core.addDevice(b, null);
        core.registerDriver(new Managed("vfio-pci", 1));
        assertTrue(group.dmaOwnerClaimable());
        Object owner = new Object();
        group.claimDmaOwner(owner);
        assertFalse(group.dmaOwnerClaimable(), "claimed once");
        assertEquals(Errno.EPERM, assertThrows(ErrnoException.class, () -> group.claimDmaOwner(new Object())).errno());
        assertEquals(IommuDomainType.BLOCKED, group.domain().type());
        group.releaseDmaOwner(owner);
        assertSame(group.defaultDomain(), group.domain());
    }
}
