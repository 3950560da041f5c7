package dev.dmaplane.machine;

import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.FaultReason;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.ConfigSpace;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A device's memory request the fabric completes as an Unsupported Request is logged as the PCIe Base Spec's error
 * flowchart says (6.2.3.1, 6.2.5): by the completer, which is the function whose BAR holds the address while its
 * Memory Space Enable is clear (7.5.1.1.3) or the root port whose host bridge decodes nothing there, with the TLP's
 * header and the requester's ID in its AER Header Log (7.8.4.7-8, what {@code aer_get_device_error_info} in
 * {@code drivers/pci/pcie/aer.c} reads); a non-posted request's requester receives the Unsupported Request
 * completion and sets Received Master Abort in its Status (7.5.1.1.4).
 */
class UnsupportedRequestTest {
    private final List<Machine> machines = new ArrayList<>();

    @AfterEach
    void close() {
        machines.forEach(Machine::close);
    }

    private Machine boot(String text, Machine.Options options) {
        Machine m = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), options);
        machines.add(m);
        return m;
    }

    private static BusMaster master(PciFunction fn) {
        fn.setMaster(true);
        fn.dma().setDmaMask(-1L);
        return fn.dma().busMaster();
    }

    private static int aer(PciFunction fn, int reg) {
        ConfigSpace cs = fn.configSpace();
        return cs.read(cs.findExtCapability(EXT_CAP_ID_ERR).orElseThrow() + reg, 4);
    }

    private static int devsta(PciFunction fn) {
        ConfigSpace cs = fn.configSpace();
        return cs.read(cs.findCapability(CAP_ID_EXP).orElseThrow() + EXP_DEVSTA, 2);
    }

    @Test
    void aPostedWriteIntoVramThatDoesNotDecodeIsLoggedByItsFunction() {
        Machine m = boot(TestMachines.text(TestMachines.DEFAULT_COPYENGINE), Machine.Options.DEFAULT);
        PciFunction target = m.pci().function("03:00.0");
        PciFunction hca = m.pci().function("04:00.0");
        Bar vram = target.bar(2).orElseThrow();
        BusMaster dev = master(hca);
        target.setMemorySpace(false);
        long addr = vram.address() + 0x1000;

        DmaFaultException e = assertThrows(DmaFaultException.class, () -> dev.write(addr, MemorySegment.ofArray(new byte[64])));
        assertEquals(FaultReason.UNSUPPORTED_REQUEST, e.reason(), e.getMessage());
        assertEquals(ERR_UNC_UNSUP, aer(target, ERR_UNCOR_STATUS));
        assertEquals(EXP_DEVSTA_URD | EXP_DEVSTA_NFED, devsta(target), "a posted request's UR is non-fatal");
        assertEquals(20, aer(target, ERR_CAP) & ERR_CAP_FEP);
        assertEquals(0x6000_0010, aer(target, ERR_HEADER_LOG), "MWr with a 4 DW header (VRAM is above 4 GiB), 16 DW");
        assertEquals(hca.bdf().requesterId() << 16 | 0xff, aer(target, ERR_HEADER_LOG + 4), "the HCA's requester ID");
        assertEquals((int) (addr >>> 32), aer(target, ERR_HEADER_LOG + 8));
        assertEquals((int) addr, aer(target, ERR_HEADER_LOG + 12));
        assertEquals(0, hca.configSpace().status() & STATUS_REC_MASTER_ABORT, "a posted request gets no completion");
        assertEquals(0, aer(hca.upstreamBridge().orElseThrow(), ERR_UNCOR_STATUS), "the port routed it; the GPU completed it");
    }

    @Test
    void aReadFromVramThatDoesNotDecodeSetsReceivedMasterAbortAtTheRequester() {
        Machine m = boot(TestMachines.text(TestMachines.DEFAULT_COPYENGINE), Machine.Options.DEFAULT);
        PciFunction target = m.pci().function("03:00.0");
        PciFunction hca = m.pci().function("04:00.0");
        BusMaster dev = master(hca);
        target.setMemorySpace(false);
        long addr = target.bar(2).orElseThrow().address();

        assertEquals(FaultReason.UNSUPPORTED_REQUEST, assertThrows(DmaFaultException.class,
                () -> dev.read(addr, MemorySegment.ofArray(new byte[8]))).reason());
        assertEquals(ERR_UNC_UNSUP, aer(target, ERR_UNCOR_STATUS));
        assertEquals(ERR_COR_ADV_NFAT, aer(target, ERR_COR_STATUS), "non-posted at non-fatal severity: advisory");
        assertEquals(STATUS_REC_MASTER_ABORT, hca.configSpace().status() & STATUS_REC_MASTER_ABORT);
        assertTrue(m.pci().lspciVerbose(hca).contains("<MAbort+"), m.pci().lspciVerbose(hca));
    }

    @Test
    void anAtomicOpNothingDecodesIsNonPosted() {
        Machine m = boot(TestMachines.text(TestMachines.DEFAULT_COPYENGINE), Machine.Options.DEFAULT);
        PciFunction target = m.pci().function("03:00.0");
        PciFunction hca = m.pci().function("04:00.0");
        BusMaster dev = master(hca);
        target.setMemorySpace(false);
        long addr = target.bar(2).orElseThrow().address();

        assertEquals(FaultReason.UNSUPPORTED_REQUEST, assertThrows(DmaFaultException.class,
                () -> dev.fetchAndAdd(addr, 1)).reason());
        assertEquals(STATUS_REC_MASTER_ABORT, hca.configSpace().status() & STATUS_REC_MASTER_ABORT);
    }

    /**
     * A request the root complex takes to a peer's VRAM (an IOVA from dma_map_resource, through the IOMMU and the host
     * bridge) while the peer's Memory Space Enable is clear: the peer completes it as Unsupported and logs it, no byte
     * moves (7.5.1.1.3).
     */
    @Test
    void aDmaThroughTheRootComplexIntoVramThatDoesNotDecodeIsLoggedByItsFunction() {
        Machine m = boot(TestMachines.text(TestMachines.DEFAULT_COPYENGINE), Machine.Options.DEFAULT);
        PciFunction target = m.pci().function("03:00.0");
        PciFunction hca2 = m.pci().function("05:00.0");
        Bar vram = target.bar(2).orElseThrow();
        BusMaster dev = master(hca2);
        long iova = hca2.dma().mapResource(vram.address(), 4096, DmaDirection.BIDIRECTIONAL);
        target.setMemorySpace(false);

        DmaFaultException e = assertThrows(DmaFaultException.class, () -> dev.write(iova, MemorySegment.ofArray(new byte[]{7})));
        assertEquals(FaultReason.UNSUPPORTED_REQUEST, e.reason(), e.getMessage());
        assertEquals(ERR_UNC_UNSUP, aer(target, ERR_UNCOR_STATUS));
        assertEquals(hca2.bdf().requesterId() << 16 | 0x1, aer(target, ERR_HEADER_LOG + 4), "the requester, one byte");
        assertEquals(0, aer(m.pci().function("00:02.0"), ERR_UNCOR_STATUS), "the root port forwarded it");
        target.setMemorySpace(true);
        byte[] back = new byte[1];
        vram.memory().read(0, MemorySegment.ofArray(back));
        assertEquals(0, back[0], "no byte moved");
        hca2.dma().unmapResource(iova, 4096, DmaDirection.BIDIRECTIONAL);
    }

    @Test
    void aWriteTheHostBridgeDecodesNowhereIsLoggedByTheRootPort() {
        String noIommu = TestMachines.text(TestMachines.DEFAULT_COPYENGINE).replace("enabled: true", "enabled: false")
                .replace("memory: 64GiB", "memory: 1GiB");
        Machine m = boot(noIommu, new Machine.Options(false, 4, true));
        PciFunction hca = m.pci().function("04:00.0");
        PciFunction rootPort = m.pci().function("00:01.0");
        BusMaster dev = master(hca);
        long nowhere = 8L << 30; // past the 1 GiB of RAM, below the 64-bit MMIO window

        DmaFaultException e = assertThrows(DmaFaultException.class, () -> dev.write(nowhere, MemorySegment.ofArray(new byte[4])));
        assertEquals(FaultReason.UNSUPPORTED_REQUEST, e.reason(), e.getMessage());
        assertEquals(ERR_UNC_UNSUP, aer(rootPort, ERR_UNCOR_STATUS));
        assertEquals(0x6000_0001, aer(rootPort, ERR_HEADER_LOG));
        assertEquals(hca.bdf().requesterId() << 16 | 0xf, aer(rootPort, ERR_HEADER_LOG + 4));
        assertEquals(2, aer(rootPort, ERR_HEADER_LOG + 8));
        assertEquals(0, aer(rootPort, ERR_HEADER_LOG + 12));
        assertEquals(0, aer(hca, ERR_UNCOR_STATUS), "the requester logs nothing for a posted request");
    }
}
