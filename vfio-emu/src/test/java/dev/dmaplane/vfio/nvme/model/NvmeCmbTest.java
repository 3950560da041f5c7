package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.p2pdma.P2pAllocation;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.p2pdma.P2pMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.Random;

import static dev.dmaplane.vfio.nvme.NvmeCommand.*;
import static dev.dmaplane.vfio.nvme.NvmeRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The controller memory buffer (NVM Express Base Specification 2.0, 8.2 and 3.1.4.12 to 3.1.4.14) set up as
 * {@code nvme_map_cmb} in {@code drivers/nvme/host/pci.c} does (CMBMSC.CRE and CMSE with the BAR's bus address,
 * then {@code pci_p2pdma_add_resource} and {@code pci_p2pmem_publish}): data in the buffer moves without the IOMMU.
 */
class NvmeCmbTest {
    static final String BARS = NvmeMachine.BAR0 + "                - { index: 2, size: 16MiB, kind: memory }\n";

    private NvmeMachine m;

    @AfterEach
    void close() {
        if (m != null) {
            m.close();
        }
    }

    @Test
    void theBufferIsReportedOnlyOnceCreIsSetAndOfferedAsP2pmem() {
        m = new NvmeMachine(BARS, NvmeMachine.DEFAULT_PROPERTIES + "                cmbBar: 2\n", false, true);
        NvmeTestDriver.Bound d = m.bound();
        Bar bar2 = m.fn.bar(2).orElseThrow();
        assertTrue(capCmbs(d.regs.read(CAP, 8)));
        assertEquals(List.of(0L, 0L), List.of(d.regs.read(CMBLOC, 4), d.regs.read(CMBSZ, 4)), "until CMBMSC.CRE");
        d.regs.write(CMBMSC, 8, CMBMSC_CRE | CMBMSC_CMSE | bar2.address());
        assertEquals(2, d.regs.read(CMBLOC, 4) & CMBLOC_BIR_MASK);
        int cmbsz = (int) d.regs.read(CMBSZ, 4);
        assertEquals(16L << 20, cmbBytes(cmbsz));
        assertEquals(CMBSZ_SQS | CMBSZ_LISTS | CMBSZ_RDS | CMBSZ_WDS, cmbsz & 0x1f);

        P2pMemory p2p = P2pDma.of(m.machine).addResource(m.fn, 2, cmbBytes(cmbsz), 0);
        p2p.publish(true);
        P2pAllocation src = p2p.alloc(8192);
        P2pAllocation dst = p2p.alloc(8192);
        byte[] data = new byte[8192];
        new Random(3).nextBytes(data);
        MemorySegment.copy(data, 0, src.cpuView(), ValueLayout.JAVA_BYTE, 0, data.length);
        long faults = m.controller.ctx.dma().faults();
        assertTrue(d.io(NvmeCommand.readWrite(NVM_WRITE, 0, 1, 40, 16, src.busAddress(), src.busAddress() + 4096)).ok(),
                "write data from the buffer");
        assertTrue(d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 40, 16, dst.busAddress(), dst.busAddress() + 4096)).ok(),
                "read data into the buffer");
        assertArrayEquals(data, dst.cpuView().toArray(ValueLayout.JAVA_BYTE));
        NvmeTestDriver.Buffer host = d.buffer(8192);
        assertTrue(d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 40, 16, host.bus(), host.bus() + 4096)).ok());
        assertArrayEquals(data, host.cpu().toArray(ValueLayout.JAVA_BYTE), "and into host memory through the IOMMU");
        assertEquals(faults, m.controller.ctx.dma().faults());
    }

    @Test
    void aCmbBarThatIsNotDeviceMemoryLeavesTheFunctionAbsent() {
        m = new NvmeMachine(NvmeMachine.DEFAULT_PROPERTIES + "                cmbBar: 2\n", false, true);
        assertTrue(m.fn.absence().orElseThrow().contains("no BAR2"), m.fn.absence().orElseThrow());
    }
}
