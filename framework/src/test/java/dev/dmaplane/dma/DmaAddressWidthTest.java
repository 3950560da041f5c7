package dev.dmaplane.dma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.iommu.IoPageTable;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.TestMachines;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A device's hardware DMA address width beside the kernel's DMA mask. {@code Documentation/core-api/dma-api-howto.rst}
 * ("DMA addressing capabilities"): the driver tells the kernel what the device can address with
 * {@code dma_set_mask_and_coherent}, and the DMA API keeps its addresses inside it ({@code dma_capable} of
 * {@code include/linux/dma-direct.h} as {@code kernel/dma/direct.c} asks it, {@code iommu_dma_alloc_iova}); the mask limits nothing else. A VFIO user's IOVA is
 * bounded by the IOMMU's aperture ({@code vfio_iommu_type1.c}'s {@code iova_list}, iommufd's {@code iova_ranges}),
 * not by a mask no kernel driver set; what the device cannot drive on the bus is its own width, which its model
 * declares (64 bits for a PCIe function whose model declares nothing).
 */
class DmaAddressWidthTest {
    private static final String HCA = "05:00.0";
    private static final String ENGINE = "03:00.0";
    private final List<Machine> machines = new ArrayList<>();

    @AfterEach
    void close() {
        machines.forEach(Machine::close);
    }

    private Machine boot(boolean identity, Machine.Options options) {
        String text = TestMachines.text(TestMachines.DEFAULT_COPYENGINE);
        if (identity) {
            text = text.replace("defaultDomain: dma", "defaultDomain: identity");
        }
        Machine m = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), options);
        machines.add(m);
        return m;
    }

    /** A model that declares {@code bits} of address width and does nothing else. */
    private record Narrow(int bits) implements DeviceModel {
        @Override
        public String name() {
            return "copyengine";
        }

        @Override
        public ModelDevice realize(ModelContext ctx) {
            ctx.dmaAddressBits(bits);
            return kind -> { };
        }
    }

    /** The function's group taken from the kernel and put in an unmanaged domain with {@code page} at {@code iova}, as VFIO does. */
    private static IommuDomain userDomain(Machine m, PciFunction fn, long iova, long page) {
        IommuGroup group = m.iommu().groupOf(fn).orElseThrow();
        Object owner = new Object();
        group.claimDmaOwner(owner);
        IommuDomain d = m.iommu().allocDomain(IommuDomainType.UNMANAGED);
        group.attach(owner, d);
        d.map(iova, page, HostMemory.PAGE_SIZE, IoPageTable.PROT_READ | IoPageTable.PROT_WRITE, "test");
        return d;
    }

    private static byte[] pattern(int n) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 7 + 3);
        }
        return b;
    }

    @Test
    void aPcieFunctionDrivesSixtyFourBitsUnlessItsModelDeclaresLess() {
        Machine m = boot(false, Machine.Options.DEFAULT);
        assertEquals(64, m.pci().function(HCA).dmaAddressBits(), "no model: a PCIe function's 64 bits");
        assertEquals(64, m.pci().function(ENGINE).dmaAddressBits(), "the copy engine declares nothing");
        assertEquals(0xFFFF_FFFFL, m.pci().function(ENGINE).dma().dmaMask(), "the kernel's mask stays 32 bits until a driver sets it");

        Machine narrow = boot(false, Machine.Options.DEFAULT.withClassPathModels(false));
        narrow.addModel(new Narrow(40));
        assertEquals(40, narrow.pci().function(ENGINE).dmaAddressBits());
    }

    @Test
    void aWidthOutside32To64LeavesTheFunctionAbsentNamingIt() {
        Machine m = boot(false, Machine.Options.DEFAULT.withClassPathModels(false));
        m.addModel(new Narrow(31));
        PciFunction fn = m.pci().function(ENGINE);
        String why = fn.absence().orElseThrow();
        assertTrue(why.contains("31 bits is outside 32..64"), why);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> m.pci().setDmaAddressBits(fn, 65)).errno());
    }

    /** The defect of issue 13: IOVA = VA above 4 GiB refused by a 32-bit mask no kernel driver ever set. */
    @Test
    void aUserIovaAbove4GibReachesRamWhileTheKernelMaskIs32Bits() {
        Machine m = boot(false, Machine.Options.DEFAULT);
        PciFunction hca = m.pci().function(HCA);
        long page = m.memory().allocPages(0) << HostMemory.PAGE_SHIFT;
        long iova = 0x7f12_3456_0000L;
        userDomain(m, hca, iova, page);
        hca.setMaster(true);

        byte[] data = pattern(4096);
        hca.dma().busMaster().write(iova, MemorySegment.ofArray(data));

        assertEquals(0xFFFF_FFFFL, hca.dma().dmaMask());
        assertArrayEquals(data, m.memory().slice(page, 4096).toArray(ValueLayout.JAVA_BYTE));
        MemorySegment back = MemorySegment.ofArray(new byte[4096]);
        hca.dma().busMaster().read(iova, back);
        assertArrayEquals(data, back.toArray(ValueLayout.JAVA_BYTE));
        assertTrue(m.iommu().faults().isEmpty());
    }

    @Test
    void a32BitDeviceRefusesAnAddressAbove4GibWithTheFaultTraced() {
        Machine m = boot(false, Machine.Options.DEFAULT);
        PciFunction hca = m.pci().function(HCA);
        m.pci().setDmaAddressBits(hca, 32);
        long page = m.memory().allocPages(0) << HostMemory.PAGE_SHIFT;
        long iova = 1L << 32;
        userDomain(m, hca, iova, page);
        hca.setMaster(true);
        long seq = m.tracer().lastSeq();

        DmaFaultException e = assertThrows(DmaFaultException.class,
                () -> hca.dma().busMaster().write(iova, MemorySegment.ofArray(pattern(64))));

        assertEquals(FaultReason.OUT_OF_RANGE, e.reason());
        assertTrue(e.getMessage().contains("beyond the device's 32-bit address width"), e.getMessage());
        assertTrue(m.tracer().since(seq).stream().anyMatch(t -> t.kind() == TraceKind.FAULT && t.address() == iova
                && t.device().equals(hca.name()) && t.detail().contains("32-bit address width")), "the fault is traced");
        assertTrue(m.iommu().faults().isEmpty(), "the request never reached the IOMMU");
        assertEquals(-1, m.memory().slice(page, 64).mismatch(MemorySegment.ofArray(new byte[64])), "no byte moved");
    }

    /**
     * {@code dma_set_mask} checks the platform ({@code dma_supported}), not the device: a driver that sets a mask
     * wider than its hardware is handed addresses the device cannot drive, and that shows as the refused request.
     */
    @Test
    void aMaskWiderThanTheDeviceIsTheDriversBugAndShowsWhenTheDeviceUsesTheAddress() {
        Machine m = boot(true, new Machine.Options(false, 4));
        PciFunction hca = m.pci().function(HCA);
        m.pci().setDmaAddressBits(hca, 32);
        hca.dma().setDmaMask(-1L);
        long high = 8L << 30;
        long bus = hca.dma().mapSingle(high, 4096, DmaDirection.BIDIRECTIONAL);
        assertEquals(high, bus, "pass-through under a 64-bit mask: the physical address itself");
        hca.setMaster(true);

        DmaFaultException e = assertThrows(DmaFaultException.class, () -> hca.dma().busMaster().readLong(bus));
        assertEquals(FaultReason.OUT_OF_RANGE, e.reason());

        hca.dma().setDmaMask(0xFFFF_FFFFL);
        long bounced = hca.dma().mapSingle(high + 4096, 4096, DmaDirection.BIDIRECTIONAL);
        assertTrue(bounced < 1L << 32, "with the right mask the DMA API bounces it below 4 GiB: 0x" + Long.toHexString(bounced));
        hca.dma().busMaster().readLong(bounced);
        hca.dma().unmapSingle(bounced, 4096, DmaDirection.BIDIRECTIONAL);
        hca.dma().unmapSingle(bus, 4096, DmaDirection.BIDIRECTIONAL);
    }
}
