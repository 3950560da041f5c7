package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import dev.dmaplane.vfio.nvme.NvmeRegs;
import dev.dmaplane.vfio.nvme.NvmeStatus;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.List;

import static dev.dmaplane.vfio.nvme.NvmeAdmin.*;
import static dev.dmaplane.vfio.nvme.NvmeCommand.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The admin command set (NVM Express Base Specification 2.0, 5.2 Asynchronous Event Request, 5.14 Get Features,
 * 5.16 Get Log Page, 5.17 Identify, 5.27 Set Features, 5.4 to 5.7 queue creation and deletion) and the MSI-X
 * completion message per completion queue vector with its mask ({@code drivers/pci/msi/}, PCIe Base 6.1.4.5).
 */
class NvmeAdminTest {
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private NvmeMachine m;

    @AfterEach
    void close() {
        if (m != null) {
            m.close();
        }
    }

    private MemorySegment identify(NvmeTestDriver.Bound d, int cns, int nsid) {
        NvmeTestDriver.Buffer b = d.buffer(IDENTIFY_SIZE);
        NvmeCompletion c = d.admin(NvmeCommand.of(ADMIN_IDENTIFY, 0, nsid, b.bus(), 0, cns, 0, 0));
        assertTrue(c.ok(), "Identify CNS " + cns + ": " + c);
        return b.cpu();
    }

    @Test
    void identifyControllerNamespaceAndActiveList() {
        m = new NvmeMachine("                namespaces: 3\n                namespaceSize: 8MiB\n                lbaSize: 4096\n",
                false, true);
        NvmeTestDriver.Bound d = m.bound();
        MemorySegment ctrl = identify(d, CNS_CONTROLLER, 0);
        assertEquals(0x1da0, ctrl.get(U16, IDC_VID));
        assertEquals(5, ctrl.get(ValueLayout.JAVA_BYTE, IDC_MDTS));
        assertEquals(NvmeRegs.VS_2_0, ctrl.get(U32, IDC_VER));
        assertEquals(3, ctrl.get(U32, IDC_NN));
        assertEquals(List.of((byte) 0x66, (byte) 0x44), List.of(ctrl.get(ValueLayout.JAVA_BYTE, IDC_SQES),
                ctrl.get(ValueLayout.JAVA_BYTE, IDC_CQES)));
        assertEquals(ONCS_DSM | ONCS_WRITE_ZEROES, ctrl.get(U16, IDC_ONCS));
        assertEquals(Controller.AERL, ctrl.get(ValueLayout.JAVA_BYTE, IDC_AERL));
        String mn = new String(ctrl.asSlice(IDC_MN, 40).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.US_ASCII);
        assertEquals("dmaplane emulated NVMe controller", mn.stripTrailing(), "ASCII, padded with spaces");

        MemorySegment ns = identify(d, CNS_NAMESPACE, 2);
        assertEquals(List.of(2048L, 2048L), List.of(ns.get(U64, IDN_NSZE), ns.get(U64, IDN_NCAP)), "8 MiB of 4 KiB");
        assertEquals(12, ns.get(U32, IDN_LBAF0) >>> 16 & 0xff, "LBADS 12");
        assertEquals(1, ns.get(ValueLayout.JAVA_BYTE, IDN_DLFEAT), "deallocated blocks read as zeroes");

        MemorySegment all = identify(d, CNS_ACTIVE_NAMESPACES, 0);
        assertEquals(List.of(1, 2, 3, 0), List.of(all.get(U32, 0), all.get(U32, 4), all.get(U32, 8), all.get(U32, 12)));
        MemorySegment above = identify(d, CNS_ACTIVE_NAMESPACES, 2);
        assertEquals(List.of(3, 0), List.of(above.get(U32, 0), above.get(U32, 4)), "the IDs above NSID 2");
        MemorySegment high = identify(d, CNS_ACTIVE_NAMESPACES, 0x8000_0000);
        assertEquals(0, high.get(U32, 0), "no active ID above 80000000h: NSIDs are unsigned");
    }

    @Test
    void queuesAreCreatedAndDeletedAndASecondPairWorks() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Buffer sq = d.buffer(4096);
        NvmeTestDriver.Buffer cq = d.buffer(4096);
        assertTrue(d.admin(NvmeCommand.createCq(0, 2, 16, cq.bus(), 0, false)).ok());
        assertTrue(d.admin(NvmeCommand.createSq(0, 2, 16, sq.bus(), 2)).ok());
        assertTrue(d.admin(NvmeCommand.createSq(0, 3, 16, d.buffer(4096).bus(), 2)).ok(), "two SQs on one CQ");
        assertEquals(NvmeStatus.INVALID_QUEUE_DELETION,
                d.admin(NvmeCommand.of(ADMIN_DELETE_CQ, 0, 0, 0, 0, 2, 0, 0)).code());
        assertTrue(d.admin(NvmeCommand.of(ADMIN_DELETE_SQ, 0, 0, 0, 0, 2, 0, 0)).ok());
        assertTrue(d.admin(NvmeCommand.of(ADMIN_DELETE_SQ, 0, 0, 0, 0, 3, 0, 0)).ok());
        assertTrue(d.admin(NvmeCommand.of(ADMIN_DELETE_CQ, 0, 0, 0, 0, 2, 0, 0)).ok());
        assertEquals(NvmeStatus.INVALID_QUEUE_IDENTIFIER,
                d.admin(NvmeCommand.of(ADMIN_DELETE_CQ, 0, 0, 0, 0, 2, 0, 0)).code(), "already deleted");
    }

    @Test
    void featuresSetGetDefaultAndCapabilities() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        NvmeCompletion nq = d.admin(NvmeCommand.of(ADMIN_GET_FEATURES, 0, 0, 0, 0, FEAT_NUM_QUEUES, 0, 0));
        int granted = NvmeTestDriver.GRANTED - 1;
        assertEquals(granted << 16 | granted, nq.dw0(), "the driver's request, zero-based");
        NvmeCompletion again = d.admin(NvmeCommand.of(ADMIN_SET_FEATURES, 0, 0, 0, 0, FEAT_NUM_QUEUES, 40 << 16 | 40, 0));
        assertEquals(granted << 16 | granted, again.dw0(), "the allocation holds until a controller reset");
        assertEquals(NvmeStatus.INVALID_FIELD, d.admin(NvmeCommand.of(ADMIN_SET_FEATURES, 0, 0, 0, 0, FEAT_NUM_QUEUES,
                0xffff, 0)).code(), "65536 queues");
        assertTrue(d.admin(NvmeCommand.of(ADMIN_SET_FEATURES, 0, 0, 0, 0, FEAT_IRQ_COALESCING, 0x0a05, 0)).ok());
        assertEquals(0x0a05, d.admin(NvmeCommand.of(ADMIN_GET_FEATURES, 0, 0, 0, 0, FEAT_IRQ_COALESCING, 0, 0)).dw0());
        assertEquals(0, d.admin(NvmeCommand.of(ADMIN_GET_FEATURES, 0, 0, 0, 0, SEL_DEFAULT << 8 | FEAT_IRQ_COALESCING,
                0, 0)).dw0(), "default");
        assertEquals(0b100, d.admin(NvmeCommand.of(ADMIN_GET_FEATURES, 0, 0, 0, 0,
                SEL_CAPABILITIES << 8 | FEAT_IRQ_COALESCING, 0, 0)).dw0(), "changeable, not saveable");
        assertTrue(d.admin(NvmeCommand.of(ADMIN_SET_FEATURES, 0, 0, 0, 0, FEAT_ARBITRATION, 0x0302_0102, 0)).ok());
        assertEquals(0x0302_0102, d.admin(NvmeCommand.of(ADMIN_GET_FEATURES, 0, 0, 0, 0, FEAT_ARBITRATION, 0, 0)).dw0());
        d.reset();
        assertEquals(3, d.admin(NvmeCommand.of(ADMIN_GET_FEATURES, 0, 0, 0, 0, FEAT_ARBITRATION, 0, 0)).dw0(),
                "a controller reset restores the defaults");
        int all = m.controller.cfg.ioQueues() - 1;
        assertEquals(all << 16 | all, d.admin(NvmeCommand.of(ADMIN_GET_FEATURES, 0, 0, 0, 0, FEAT_NUM_QUEUES, 0, 0)).dw0());
    }

    @Test
    void errorAndSmartLogPages() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Buffer data = d.buffer(8192);
        for (int i = 0; i < 3; i++) {
            assertTrue(d.io(NvmeCommand.readWrite(NVM_WRITE, 0, 1, i * 16L, 16, data.bus(), data.bus() + 4096)).ok());
        }
        assertTrue(d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, 8, data.bus(), 0)).ok());
        NvmeCompletion bad = d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 1L << 40, 1, data.bus(), 0));
        NvmeTestDriver.Buffer log = d.buffer(4096);
        assertTrue(d.admin(NvmeCommand.of(ADMIN_GET_LOG_PAGE, 0, 0, log.bus(), 0, 15 << 16 | LOG_ERROR, 0, 0)).ok());
        MemorySegment e = log.cpu();
        assertEquals(1, e.get(U64, ERR_COUNT));
        assertEquals(List.of(1, bad.cid(), NvmeStatus.LBA_OUT_OF_RANGE), List.of((int) e.get(U16, ERR_SQID),
                (int) e.get(U16, ERR_CID), e.get(U16, ERR_STATUS) >>> 1 & NvmeStatus.CODE_MASK));
        assertEquals(1L << 40, e.get(U64, ERR_LBA));

        assertTrue(d.admin(NvmeCommand.of(ADMIN_GET_LOG_PAGE, 0, 0xffff_ffff, log.bus(), 0, 127 << 16 | LOG_SMART,
                0, 0)).ok());
        MemorySegment s = log.cpu();
        assertEquals(List.of(3L, 1L), List.of(s.get(U64, SMART_HOST_WRITES), s.get(U64, SMART_HOST_READS)));
        assertEquals(List.of(1L, 1L), List.of(s.get(U64, SMART_DATA_UNITS_WRITTEN), s.get(U64, SMART_DATA_UNITS_READ)),
                "48 and 8 blocks of 512 bytes: one thousand-unit, rounded up");
        assertEquals(1, s.get(U64, SMART_ERROR_LOG_ENTRIES));
        assertEquals(NvmeStatus.INVALID_FIELD, d.admin(NvmeCommand.of(ADMIN_GET_LOG_PAGE, 0, 0, log.bus(), 0,
                15 << 16 | LOG_SMART, 0, 2)).code(), "an offset that is not dword aligned");
        assertEquals(NvmeStatus.INVALID_FIELD, d.admin(NvmeCommand.of(ADMIN_GET_LOG_PAGE, 0, 0, log.bus(), 0,
                0xffff << 16 | LOG_SMART, 0xffff, 0)).code(), "16 GiB of log page: over MDTS");
    }

    /** Events complete outstanding requests; a controller reset drops outstanding requests without completions. */
    @Test
    void asyncEventsCompleteRequestsAndDisableDropsThem() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        for (int i = 0; i < 4; i++) {
            d.submit(d.admin, NvmeCommand.of(ADMIN_ASYNC_EVENT, 0x300 + i, 0, 0, 0, 0, 0, 0));
        }
        assertTrue(d.admin(NvmeCommand.of(ADMIN_GET_FEATURES, 0, 0, 0, 0, FEAT_ARBITRATION, 0, 0)).ok(),
                "outstanding requests take no completion slot");
        d.regs.write(NvmeRegs.sqTailDoorbell(9, d.dstrd), 4, 1);
        NvmeCompletion ev = d.reap(d.admin);
        assertEquals(0x300, ev.cid(), "the oldest request completes");
        assertEquals(AE_TYPE_ERROR | AE_INFO_INVALID_DOORBELL << 8 | LOG_ERROR << 16, ev.dw0());
        d.regs.write(NvmeRegs.sqTailDoorbell(1, d.dstrd), 4, 1000);
        assertEquals(AE_TYPE_ERROR | AE_INFO_INVALID_DOORBELL_VALUE << 8 | LOG_ERROR << 16, d.reap(d.admin).dw0(),
                "a tail past the queue's 64 entries");
        d.reset();
        for (int i = 0; i < 4; i++) {
            d.submit(d.admin, NvmeCommand.of(ADMIN_ASYNC_EVENT, 0x400 + i, 0, 0, 0, 0, 0, 0));
        }
        assertEquals(NvmeStatus.ASYNC_EVENT_LIMIT_EXCEEDED,
                d.admin(NvmeCommand.of(ADMIN_ASYNC_EVENT, 0x500, 0, 0, 0, 0, 0, 0)).code(),
                "the reset dropped the old requests: four new ones fill the limit again");
        assertFalse(d.posted(d.admin), "no completion came for the dropped requests");
    }

    /** A masked MSI-X vector holds its completion message pending; unmasking sends it. */
    @Test
    void aMaskedVectorHoldsTheCompletionMessage() {
        m = new NvmeMachine(true);
        NvmeTestDriver.Bound d = m.bound();
        Msix msix = m.fn.msix().orElseThrow();
        NvmeTestDriver.Buffer b = d.buffer(4096);
        long ctl = msix.tableOffset() + 16L * NvmeTestDriver.IO_VECTOR + 12;
        d.regs.write(ctl, 4, 1);
        assertTrue(d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, 8, b.bus(), 0)).ok(), "polled past the mask");
        assertEquals(0, d.io.irq.count());
        assertTrue(msix.pending(NvmeTestDriver.IO_VECTOR));
        d.regs.write(ctl, 4, 0);
        assertEquals(1, d.io.irq.count(), "delivered on unmask");
    }

    /** Without MSI-X the admin CQ's vector 0 is INTx; INTMS holds it and INTMC lets the held one through (3.1.4.3). */
    @Test
    void intmsHoldsThePinInterruptUntilIntmc() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        IrqVectors intx = IrqVectors.alloc(m.fn, 1, 1, IrqVectors.PCI_IRQ_INTX);
        IrqTrigger irq = new IrqTrigger();
        intx.requestTrigger(0, irq, "nvme0q0");
        NvmeCommand getArb = NvmeCommand.of(ADMIN_GET_FEATURES, 0, 0, 0, 0, FEAT_ARBITRATION, 0, 0);
        assertTrue(d.admin(getArb).ok());
        assertEquals(1, irq.count(), "the admin CQ interrupts on vector 0");
        d.regs.write(NvmeRegs.INTMS, 4, 1);
        assertEquals(1, d.regs.read(NvmeRegs.INTMC, 4), "both registers read the mask");
        assertTrue(d.admin(getArb).ok());
        assertEquals(1, irq.count(), "masked: held");
        d.regs.write(NvmeRegs.INTMC, 4, 1);
        assertEquals(2, irq.count(), "unmasked: the held interrupt comes");
        assertEquals(0, d.regs.read(NvmeRegs.INTMS, 4));
    }

    /** Without MDTS (0, no limit) a Get Log Page of 2^32 dwords is still refused, not attempted (5.16). */
    @Test
    void aHugeLogPageWithoutMdtsIsAnInvalidField() {
        m = new NvmeMachine(NvmeMachine.DEFAULT_PROPERTIES + "                mdts: 0\n", false, true);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Buffer log = d.buffer(4096);
        assertEquals(NvmeStatus.INVALID_FIELD, d.admin(NvmeCommand.of(ADMIN_GET_LOG_PAGE, 0, 0, log.bus(), 0,
                0xffff << 16 | LOG_SMART, 0xffff, 0)).code());
        assertTrue(d.admin(NvmeCommand.of(ADMIN_GET_LOG_PAGE, 0, 0, log.bus(), 0, 127 << 16 | LOG_SMART, 0, 0)).ok());
    }
}
