package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.Vfio;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The user-space driver over the iommufd front end, in the flow of {@code Documentation/userspace-api/iommufd.rst}
 * and {@code drivers/vfio/device_cdev.c}: {@code /dev/iommu}, IOAS_ALLOC, the device cdev opened,
 * {@code VFIO_DEVICE_BIND_IOMMUFD}, {@code VFIO_DEVICE_ATTACH_IOMMUFD_PT} to the IOAS, buffers mapped with
 * {@code IOMMU_IOAS_MAP} at {@code FIXED_IOVA} = VA; bring-up, random data written and read back bit-exact,
 * {@code nvme perf --iommufd} checking its reads, and after close nothing pinned, mapped, attached or owned.
 */
class IommufdFrontEndTest {
    private static final String NVME = "0000:06:00.0";
    private final Machine machine = Machine.bootDefault();
    private final long pinsBefore = machine.memory().pinsOutstanding();

    @AfterEach
    void close() {
        try {
            assertEquals(pinsBefore, machine.memory().pinsOutstanding(), "no page pinned after close");
            assertEquals(0, Vfio.of(machine).pinnedPages(), "the IOAS holds no pin");
            assertTrue(machine.iommu().domains().stream().noneMatch(d -> d.type() == IommuDomainType.UNMANAGED),
                    "the IOAS's domain was freed");
            PciFunction fn = machine.pci().function(NVME);
            IommuGroup group = machine.iommu().groupOf(fn).orElseThrow();
            assertEquals(IommuDomainType.DMA, group.domain().type(), "the group is back on the DMA API's domain");
            assertNull(group.owner(), "and owned by no one: the device is detached");
            assertTrue(fn.driver().isEmpty(), "06:00.0 given back to no driver");
        } finally {
            machine.close();
        }
    }

    @Test
    void bringUpThroughIommufdAttachesTheDeviceToItsIoas() {
        try (NvmeController c = NvmeController.attach(machine, NVME, NvmeController.Options.DEFAULT.withIommufd(true))) {
            IommufdFrontEnd fe = assertInstanceOf(IommufdFrontEnd.class, c.frontEnd());
            assertTrue(fe.isOpen());
            assertEquals(NVME, fe.bdf());
            assertEquals(0x1da0, c.identity().vendor());
            assertEquals(1L << 30, c.identity().namespaceBytes());
            IommuGroup group = machine.iommu().groupOf(machine.pci().function(NVME)).orElseThrow();
            assertEquals(IommuDomainType.UNMANAGED, group.domain().type(), "attached to the IOAS's page table");
            assertNotNull(group.owner(), "iommufd claimed DMA ownership of the group");
            assertTrue(Vfio.of(machine).pinnedPages() > 0, "the admin queues are pinned through IOAS_MAP");
        }
    }

    @Test
    void randomDataWrittenThenReadBackBitExact() {
        try (NvmeController c = NvmeController.attach(machine, NVME, NvmeController.Options.DEFAULT.withIommufd(true))) {
            NvmeIdentity id = c.identity();
            QueuePair qp = c.createIoQueuePair(16, id.maxTransfer(), false);
            Random rnd = new Random(2026);
            try (DmaRegion out = DmaRegion.allocate(c.frontEnd(), 256 << 10);
                 DmaRegion in = DmaRegion.allocate(c.frontEnd(), 256 << 10)) {
                for (int size : new int[]{512, 4096, 8192, 128 << 10}) {
                    byte[] data = new byte[size];
                    rnd.nextBytes(data);
                    long slba = (rnd.nextLong() >>> 1) % (id.blocks() - size / id.blockSize());
                    out.write(4096, MemorySegment.ofArray(data));
                    c.io(qp, NvmeCommand.NVM_WRITE, slba, out, 4096, size);
                    c.io(qp, NvmeCommand.NVM_READ, slba, in, 8192, size);
                    MemorySegment back = MemorySegment.ofArray(new byte[size]);
                    in.read(8192, back);
                    assertArrayEquals(data, back.toArray(ValueLayout.JAVA_BYTE), size + " bytes at LBA " + slba);
                }
            }
            assertEquals(8, qp.completed());
        }
    }

    @Test
    void perfOverIommufdChecksItsReads() {
        PerfResult r = NvmePerf.run(machine, PerfOptions.of(8, 4096, Workload.RANDREAD, Duration.ofMillis(300))
                .withIommufd(true).withWorkers(2), false);
        assertTrue(r.workers().stream().allMatch(w -> w.ios() > 0), "each worker did I/O");
        assertTrue(r.total().verified() > 0, "reads verified");
        assertTrue(r.report().contains("iommufd IOAS"), r.report());
    }

    @Test
    void aFailedAttachAndACloseLeaveNothing() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> NvmeController.attach(machine, NVME,
                new NvmeController.Options(4096, 0, true)));
        assertEquals(Errno.ENOMEM, e.errno(), "4 KiB of RLIMIT_MEMLOCK cannot hold the admin queues: " + e.getMessage());
        NvmeController c = NvmeController.attach(machine, NVME, NvmeController.Options.DEFAULT.withIommufd(true));
        DmaFrontEnd fe = c.frontEnd();
        c.close();
        assertFalse(fe.isOpen(), "the iommufd and the cdev are closed");
    }
}
