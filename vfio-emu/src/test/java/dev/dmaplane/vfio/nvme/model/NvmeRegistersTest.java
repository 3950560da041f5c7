package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciReset;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeRegs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.List;

import static dev.dmaplane.vfio.nvme.NvmeRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The controller registers (NVM Express Base Specification 2.0, 3.1.4) and the enable, disable and shutdown
 * transitions of CC and CSTS (3.5.1, 3.6), with CSTS.CFS for an admin queue setup the controller cannot run, as
 * QEMU's {@code hw/nvme/ctrl.c} {@code nvme_start_ctrl} refuses it; the model on the default machine's
 * {@code 0000:06:00.0}.
 */
class NvmeRegistersTest {
    private NvmeMachine m;

    @AfterEach
    void close() {
        if (m != null) {
            m.close();
        }
    }

    @Test
    void theDefaultMachineHasTheControllerAt0600WhenTheModelIsOnTheClassPath() {
        try (Machine machine = Machine.bootDefault()) {
            PciFunction fn = machine.pci().function(NvmeMachine.NVME);
            assertEquals("nvme", fn.model().orElseThrow());
            assertTrue(fn.isPresent(), fn.absence().orElse(""));
            assertEquals(64, fn.dmaAddressBits(), "PRP and SGL entries carry 64-bit addresses");
            Bar bar0 = fn.bar(0).orElseThrow();
            assertEquals(16 << 10, bar0.size());
            assertFalse(bar0.prefetchable(), "3.1.4: the register BAR is not prefetchable");
            assertTrue(bar0.backing() instanceof Bar.Mmio);
            assertEquals(List.of(0x2000L, 0x3000L), List.of(fn.msix().orElseThrow().tableOffset(),
                    fn.msix().orElseThrow().pbaOffset()));
            assertTrue(machine.pci().lspciTree().contains("0000:06:00.0 model=nvme"), machine.pci().lspciTree());
        }
    }

    @Test
    void aMachineWithoutTheModelHasNoFunctionAt0600UntilItArrives() {
        try (Machine machine = Machine.boot(TopologyLoader.defaultMachine(),
                Machine.Options.DEFAULT.withClassPathModels(false))) {
            PciFunction fn = machine.pci().function(NvmeMachine.NVME);
            assertEquals("device model 'nvme' is not loaded", fn.absence().orElseThrow());
            machine.addModel(new NvmeModel());
            assertTrue(fn.isPresent());
        }
    }

    @Test
    void capabilitiesAndVersionAtPowerOn() {
        m = new NvmeMachine(NvmeMachine.DEFAULT_PROPERTIES, false, false);
        m.machine.devices().unbind(m.fn); // the driver's remove disabled the controller: CSTS as at power-on
        Bar.Mmio r = m.fn.bar(0).orElseThrow().mmio();
        m.fn.setMemorySpace(true);
        long cap = r.read(CAP, 8);
        assertEquals(1023, capMqes(cap), "MQES: 1024 entries, zero-based");
        assertTrue(capCqr(cap), "CQR: queues must be contiguous");
        assertEquals(15, capTimeout(cap));
        assertEquals(0, capDstrd(cap));
        assertEquals(CSS_NVM, capCss(cap) & CSS_NVM);
        assertEquals(List.of(0, 4), List.of(capMpsMin(cap), capMpsMax(cap)), "4 KiB to 64 KiB pages");
        assertEquals(VS_2_0, r.read(VS, 4));
        assertEquals(0, r.read(CSTS, 4));
        assertEquals(0, r.read(sqTailDoorbell(0, 0), 4), "doorbells read as zero");
        assertEquals(0xFFFF_FFFFL, r.read(CAP, 4), "CAP is one 64-bit register");
    }

    @Test
    void doorbellStrideSpacesTheDoorbells() {
        m = new NvmeMachine("                doorbellStride: 2\n                ioQueues: 4\n", false, true);
        Bar.Mmio r = m.fn.bar(0).orElseThrow().mmio();
        assertEquals(2, capDstrd(r.read(CAP, 8)));
        assertEquals(0x1000 + 3 * 16, cqHeadDoorbell(1, 2));
        NvmeTestDriver.Buffer b = m.bound().buffer(4096);
        assertTrue(m.bound().io(NvmeCommand.readWrite(NvmeCommand.NVM_READ, 0, 1, 0, 8, b.bus(), 0)).ok(),
                "the driver rings doorbells 16 bytes apart");
    }

    @Test
    void disableResetsAndShutdownCompletes() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        Bar.Mmio r = d.regs;
        assertEquals(CSTS_RDY, r.read(CSTS, 4));
        r.write(CC, 4, r.read(CC, 4) | CC_SHN_NORMAL << CC_SHN_SHIFT);
        assertEquals(CSTS_RDY | CSTS_SHST_COMPLETE << CSTS_SHST_SHIFT, r.read(CSTS, 4), "3.6.2: shutdown complete");
        r.write(CC, 4, r.read(CC, 4) & ~(3 << CC_SHN_SHIFT));
        assertEquals(CSTS_RDY, r.read(CSTS, 4));
        int cc = (int) r.read(CC, 4);
        r.write(CC, 4, cc | 1 << CC_MPS_SHIFT);
        assertEquals(cc, r.read(CC, 4), "CC fields other than EN and SHN are taken only while disabled");
        r.write(AQA, 4, 0);
        assertNotEquals(0, r.read(AQA, 4), "AQA is taken only while disabled");
        d.reset();
        assertEquals(CSTS_RDY, r.read(CSTS, 4));
        NvmeTestDriver.Buffer b = d.buffer(4096);
        r.write(sqTailDoorbell(1, 0), 4, 1);
        assertEquals(CSTS_RDY, r.read(CSTS, 4), "a doorbell of a queue the reset deleted is ignored");
        d.createIoQueues(null);
        assertTrue(d.io(NvmeCommand.readWrite(NvmeCommand.NVM_READ, 0, 1, 0, 8, b.bus(), 0)).ok());
    }

    private void assertFatal(NvmeTestDriver.Bound d, String what, Runnable setup) {
        d.disable();
        d.regs.write(AQA, 4, aqa(NvmeTestDriver.ADMIN_ENTRIES, NvmeTestDriver.ADMIN_ENTRIES));
        d.regs.write(ASQ, 8, d.admin.sq.dmaAddress());
        d.regs.write(ACQ, 8, d.admin.cq.dmaAddress());
        d.regs.write(CC, 4, ccEnable(0) & ~CC_EN);
        setup.run();
        d.regs.write(CC, 4, d.regs.read(CC, 4) | CC_EN);
        assertEquals(CSTS_CFS, d.regs.read(CSTS, 4), what + ": controller fatal status, not ready");
        d.regs.write(CC, 4, 0);
        assertEquals(0, d.regs.read(CSTS, 4), what + ": the reset clears CFS");
    }

    @Test
    void aBadAdminQueueSetupIsAControllerFatalStatus() {
        m = new NvmeMachine(NvmeMachine.DEFAULT_PROPERTIES, false, false);
        NvmeTestDriver.Bound d = m.bound();
        assertFatal(d, "AQA 0", () -> d.regs.write(AQA, 4, 0));
        assertFatal(d, "one-entry admin CQ", () -> d.regs.write(AQA, 4, aqa(32, 1)));
        assertFatal(d, "ASQ 0", () -> d.regs.write(ASQ, 8, 0));
        assertFatal(d, "MPS 5 (128 KiB) over MPSMAX", () -> d.regs.write(CC, 4, ccEnable(5) & ~CC_EN));
        assertFatal(d, "ASQ not aligned to a 64 KiB page", () -> {
            d.regs.write(CC, 4, ccEnable(4) & ~CC_EN);
            d.regs.write(ASQ, 8, (d.admin.sq.dmaAddress() & ~0xffffL) + 0x1000);
        });
        assertFatal(d, "CSS 1", () -> d.regs.write(CC, 4, ccEnable(0) & ~CC_EN | 1 << CC_CSS_SHIFT));
        assertFatal(d, "AMS 1", () -> d.regs.write(CC, 4, ccEnable(0) & ~CC_EN | 1 << CC_AMS_SHIFT));
        assertFatal(d, "IOSQES 0", () -> d.regs.write(CC, 4, ccEnable(0) & ~CC_EN & ~(0xf << CC_IOSQES_SHIFT)));
        d.regs.write(CC, 4, ccEnable(0));
        assertEquals(CSTS_RDY, d.regs.read(CSTS, 4), "a good setup after the reset");
    }

    /** A Function Level Reset returns every register to its power-on value and deletes every queue (3.7.1). */
    @Test
    void aFunctionLevelResetReturnsToPowerOn() {
        m = new NvmeMachine(false);
        Bar.Mmio r = m.bound().regs;
        r.write(INTMS, 4, 3);
        m.controller.reset(PciReset.FLR);
        assertEquals(List.of(0L, 0L, 0L, 0L, 0L, 0L), List.of(r.read(CC, 4), r.read(CSTS, 4), r.read(AQA, 4),
                r.read(ASQ, 8), r.read(ACQ, 8), r.read(INTMS, 4)));
        assertTrue(NvmeRegs.capCqr(r.read(CAP, 8)), "capabilities stay");
    }
}
