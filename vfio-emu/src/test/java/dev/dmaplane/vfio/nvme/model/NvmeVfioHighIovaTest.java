package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.Vfio;
import dev.dmaplane.vfio.VfioUser;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicLong;

import static dev.dmaplane.vfio.nvme.NvmeCommand.NVM_READ;
import static dev.dmaplane.vfio.nvme.NvmeCommand.NVM_WRITE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 13: an SPDK-style driver over vfio-pci keeps its queues and buffers at IOVA = VA, above 4 GiB, and the NVMe
 * controller reaches them. No kernel driver set the function's DMA mask ({@code drivers/vfio/pci/vfio_pci_core.c}
 * never calls {@code dma_set_mask}); what bounds the IOVA is the IOMMU's aperture ({@code vfio_iommu_type1.c}'s
 * {@code iova_list}) and what the controller can drive, 64 bits ({@code drivers/nvme/host/pci.c}:
 * {@code DMA_BIT_MASK(64)}). Before, the bus master held the function to the 32-bit mask and the controller
 * reported Controller Fatal Status at its first admin command.
 */
class NvmeVfioHighIovaTest {
    private static final String NVME = "0000:06:00.0";
    private static final int PAGE = 4096;

    private final Machine machine = Machine.bootDefault();
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("spdk");
    private final VfioUser user = vfio.open(mm, 64 << 20);

    @AfterEach
    void close() {
        user.close();
        mm.close();
        machine.close();
    }

    @Test
    void ioThroughIovaEqualVaAbove4GibMovesTheData() {
        DeviceCore core = machine.devices();
        core.registerDriver(vfio.driver());
        PciFunction fn = machine.pci().function(NVME);
        core.setDriverOverride(fn, "vfio-pci");
        core.reprobe(fn);
        IommuGroup group = machine.iommu().groupOf(fn).orElseThrow();

        try (VfioNvmeUser u = new VfioNvmeUser(user, group.id(), NVME, new AtomicLong())) {
            assertTrue(Long.compareUnsigned(u.iova(u.memory), 1L << 32) >= 0,
                    "IOVA = VA above 4 GiB: 0x" + Long.toHexString(u.iova(u.memory)));
            assertEquals(0xFFFF_FFFFL, fn.dma().dmaMask(), "no kernel driver set the mask");
            u.createQueuePair(1, 4, 4);
            u.createQueuePair(2, 4, 4);
            byte[] data = new byte[PAGE];
            for (int i = 0; i < PAGE; i++) {
                data[i] = (byte) (i * 31 + 7);
            }
            mm.write(u.data(0), MemorySegment.ofArray(data));

            u.submit(1, NvmeCommand.readWrite(NVM_WRITE, 0, 1, 8, PAGE / 512, u.iova(u.data(0)), 0));
            assertTrue(u.awaitCompletion(u.cq(1), true).ok(), "the write");
            u.submit(2, NvmeCommand.readWrite(NVM_READ, 0, 1, 8, PAGE / 512, u.iova(u.data(1)), 0));
            assertTrue(u.awaitCompletion(u.cq(2), true).ok(), "the read");

            MemorySegment back = MemorySegment.ofArray(new byte[PAGE]);
            mm.read(u.data(1), back);
            assertArrayEquals(data, back.toArray(ValueLayout.JAVA_BYTE), "the read returns what the write stored");
            assertTrue(machine.iommu().faults().isEmpty());
        }
    }
}
