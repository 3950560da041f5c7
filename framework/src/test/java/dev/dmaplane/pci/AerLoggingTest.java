package dev.dmaplane.pci;

import dev.dmaplane.hw.RegisterBlock;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A function that receives a memory request while it decodes no memory logs an Unsupported Request (PCIe Base Spec
 * 7.5.1.1.3 Memory Space Enable, 6.2.5 error logging, 6.2.3.2.4.1 Advisory Non-Fatal for a non-posted request at
 * non-fatal severity; the registers {@code drivers/pci/pcie/aer.c} reads in {@code aer_get_device_error_info}), and
 * an access its registers refuse as a violation of their programming model is a Completer Abort (2.3.1), which also
 * sets Signaled Target Abort in Status (7.5.1.1.4). Reported errors reach the root port's Root Error Status and Error
 * Source Identification (7.8.4.10-11; what {@code aer_isr} and {@code aer_isr_one_error} read). A configuration
 * write nothing completes sets Received Master Abort in the Secondary Status of the bridge above (7.5.1.3.7).
 */
class AerLoggingTest {
    private PciTopology t;
    private PciFunction fn;
    private Bar bar;

    @TempDir
    Path dir;

    @BeforeEach
    void boot() {
        t = TopologyLoader.defaultMachine();
        fn = t.functions().stream().filter(f -> !f.isBridge() && f.bars().stream()
                .anyMatch(b -> b.backing() instanceof Bar.Mmio)).findFirst().orElseThrow();
        bar = fn.bars().stream().filter(b -> b.backing() instanceof Bar.Mmio).findFirst().orElseThrow();
    }

    @AfterEach
    void close() {
        t.close();
    }

    private int aer(int reg) {
        return fn.configSpace().read(fn.configSpace().findExtCapability(EXT_CAP_ID_ERR).orElseThrow() + reg, 4);
    }

    private int devsta() {
        return fn.configSpace().read(fn.configSpace().findCapability(CAP_ID_EXP).orElseThrow() + EXP_DEVSTA, 2);
    }

    @Test
    void decodedAccessesLogNothing() {
        bar.mmio().read(0, 4);
        assertEquals(0, aer(ERR_UNCOR_STATUS));
        assertEquals(0, devsta());
    }

    @Test
    void readWithMemorySpaceDisabledIsAnAdvisoryNonFatalUnsupportedRequest() {
        fn.setMemorySpace(false);
        assertEquals(0xFFFF_FFFFL, bar.mmio().read(0x10, 4));
        assertEquals(ERR_UNC_UNSUP, aer(ERR_UNCOR_STATUS));
        assertEquals(ERR_COR_ADV_NFAT, aer(ERR_COR_STATUS));
        assertEquals(EXP_DEVSTA_URD | EXP_DEVSTA_CED, devsta());
        assertEquals(0, aer(ERR_HEADER_LOG), "Advisory Non-Fatal is masked at reset: no header logged");
    }

    @Test
    void writeInD3hotIsANonFatalUnsupportedRequestWithItsHeaderLogged() {
        long addr = bar.address() + 0x20;
        fn.setPowerState(true);
        bar.mmio().write(0x20, 4, 0x1234);
        assertEquals(ERR_UNC_UNSUP, aer(ERR_UNCOR_STATUS));
        assertEquals(EXP_DEVSTA_URD | EXP_DEVSTA_NFED, devsta());
        assertEquals(20, aer(ERR_CAP) & ERR_CAP_FEP, "First Error Pointer: bit 20, Unsupported Request");
        boolean wide = (addr >>> 32) != 0;
        assertEquals((wide ? 0x6000_0001 : 0x4000_0001), aer(ERR_HEADER_LOG), "MWr, 1 DW");
        assertEquals(0x0000_000f, aer(ERR_HEADER_LOG + 4), "requester 00:00.0, first byte enables 0xf");
        assertEquals((int) addr, aer(ERR_HEADER_LOG + (wide ? 12 : 8)));
        fn.setPowerState(false);
        fn.configSpace().write(fn.configSpace().findExtCapability(EXT_CAP_ID_ERR).orElseThrow() + ERR_UNCOR_STATUS, 4,
                ERR_UNC_UNSUP);
        assertEquals(0, aer(ERR_UNCOR_STATUS), "software clears the status by writing one (RW1CS)");
    }

    /** An unbound function of the default machine with a one-register block attached to its register BAR. */
    private Bar withRegisters() {
        PciFunction plain = t.functions().stream().filter(f -> !f.isBridge() && f.model().isEmpty()
                && f.bars().stream().anyMatch(b -> b.backing() instanceof Bar.Mmio)).findFirst().orElseThrow();
        fn = plain;
        Bar b = plain.bars().stream().filter(x -> x.backing() instanceof Bar.Mmio).findFirst().orElseThrow();
        b.mmio().attach(RegisterBlock.builder("test").constant("ID", 0, 4, 0x1234).build());
        return b;
    }

    @Test
    void anAccessTheRegistersRefuseIsACompleterAbort() {
        Bar b = withRegisters();
        assertEquals(0x1234, b.mmio().read(0, 4));
        assertEquals(0, aer(ERR_UNCOR_STATUS), "a register at its width is no error");
        assertEquals(0xFFFF, b.mmio().read(0, 2), "a wrong width reads all-ones");
        assertEquals(ERR_UNC_COMP_ABORT, aer(ERR_UNCOR_STATUS));
        assertEquals(ERR_COR_ADV_NFAT, aer(ERR_COR_STATUS), "a non-posted CA at non-fatal severity is advisory");
        assertEquals(EXP_DEVSTA_CED, devsta(), "no Unsupported Request Detected for a Completer Abort");
        assertEquals(STATUS_SIG_TARGET_ABORT, fn.configSpace().status() & STATUS_ERROR_BITS);
        b.mmio().write(0x40, 4, 1);
        assertEquals(EXP_DEVSTA_CED | EXP_DEVSTA_NFED, devsta(), "a posted one is non-fatal");
        assertEquals(15, aer(ERR_CAP) & ERR_CAP_FEP, "First Error Pointer: bit 15, Completer Abort");
    }

    private PciFunction rootPort() {
        PciFunction at = fn;
        while (at.portType().orElseThrow() != PciPortType.ROOT_PORT) {
            at = at.upstreamBridge().orElseThrow();
        }
        return at;
    }

    private ConfigSpace rootPortAbove() {
        return rootPort().configSpace();
    }

    private void enableReporting(int bits) {
        int devctl = fn.configSpace().findCapability(CAP_ID_EXP).orElseThrow() + EXP_DEVCTL;
        fn.configSpace().write(devctl, 2, fn.configSpace().read(devctl, 2) | bits);
    }

    @Test
    void withoutReportingEnabledTheRootPortHearsNothing() {
        fn.setMemorySpace(false);
        bar.mmio().write(0, 4, 1);
        ConfigSpace rp = rootPortAbove();
        assertEquals(0, rp.read(rp.findExtCapability(EXT_CAP_ID_ERR).orElseThrow() + ERR_ROOT_STATUS, 4));
    }

    @Test
    void anEnabledNonFatalErrorReachesTheRootPortsRootErrorStatus() {
        enableReporting(EXP_DEVCTL_CERE | EXP_DEVCTL_NFERE | EXP_DEVCTL_FERE | EXP_DEVCTL_URRE);
        fn.setMemorySpace(false);
        bar.mmio().write(0, 4, 1);
        ConfigSpace rp = rootPortAbove();
        int aer = rp.findExtCapability(EXT_CAP_ID_ERR).orElseThrow();
        assertEquals(ERR_ROOT_UNCOR_RCV | ERR_ROOT_NONFATAL_RCV, rp.read(aer + ERR_ROOT_STATUS, 4));
        assertEquals(fn.bdf().requesterId(), rp.read(aer + ERR_ROOT_ERR_SRC, 4) >>> 16, "ERR_FATAL/NONFATAL source");
        bar.mmio().write(4, 4, 1);
        assertEquals(ERR_ROOT_UNCOR_RCV | ERR_ROOT_MULTI_UNCOR_RCV | ERR_ROOT_NONFATAL_RCV, rp.read(aer + ERR_ROOT_STATUS, 4));
        assertEquals(0, fn.configSpace().status() & STATUS_SIG_SYSTEM_ERROR, "SERR# Enable is clear");
        String lspci = t.lspciVerbose(rootPort());
        assertTrue(lspci.contains("RootSta: CERcvd- MultCERcvd- UERcvd+ MultUERcvd+"), lspci);
    }

    /**
     * PCIe Base Spec 7.8.4.9 and 6.2.4.1.2: with Root Error Command's Non-Fatal Reporting Enable set, an
     * ERR_NONFATAL reaching the root port raises its MSI (vector 0, the Advanced Error Interrupt Message Number of a
     * single vector); without the enable it only records the error. With MSI Enable clear (7.7.1.2) no message goes
     * out: the raise is dropped, and a capability without per-vector masking has no Pending bit to set.
     */
    @Test
    void anEnabledErrorRaisesTheRootPortsMsiUnlessMsiIsDisabled() {
        enableReporting(EXP_DEVCTL_NFERE | EXP_DEVCTL_URRE);
        PciFunction port = rootPort();
        ConfigSpace rp = port.configSpace();
        Msi msi = port.msi().orElseThrow();
        List<Integer> messages = new ArrayList<>();
        msi.attach((vector, address, data) -> messages.add(data));
        rp.write(msi.capability() + MSI_ADDRESS_LO, 4, 0xFEE0_0000);
        rp.write(msi.dataOffset(), 2, 0x41);
        rp.write(msi.capability() + MSI_FLAGS, 2, MSI_FLAGS_ENABLE);
        port.setMaster(true);
        int aer = rp.findExtCapability(EXT_CAP_ID_ERR).orElseThrow();
        fn.setMemorySpace(false);

        bar.mmio().write(0, 4, 1);
        assertEquals(List.of(), messages, "Root Error Command enables nothing at reset");
        rp.write(aer + ERR_ROOT_COMMAND, 4, ERR_ROOT_CMD_NONFATAL_EN);
        bar.mmio().write(0, 4, 1);
        assertEquals(List.of(0x41), messages, "one message, vector 0");
        assertTrue(t.lspciVerbose(port).contains("RootCmd: CERptEn- NFERptEn+ FERptEn-"), t.lspciVerbose(port));

        rp.write(msi.capability() + MSI_FLAGS, 2, 0);
        long dropped = msi.dropped();
        bar.mmio().write(0, 4, 1);
        assertEquals(List.of(0x41), messages, "MSI Enable clear: no message");
        assertEquals(dropped + 1, msi.dropped());
        assertFalse(msi.pending(0), "no Pending bit without per-vector masking");
        assertEquals(ERR_ROOT_UNCOR_RCV | ERR_ROOT_MULTI_UNCOR_RCV | ERR_ROOT_NONFATAL_RCV, rp.read(aer + ERR_ROOT_STATUS, 4),
                "the error is recorded all the same");
    }

    @Test
    void serrEnableAloneSendsErrNonFatalAndSetsSignaledSystemError() {
        enableReporting(EXP_DEVCTL_URRE);
        fn.configSpace().write(COMMAND, 2, fn.configSpace().command() | COMMAND_SERR);
        fn.setPowerState(true);
        bar.mmio().write(0, 4, 1);
        assertEquals(STATUS_SIG_SYSTEM_ERROR, fn.configSpace().status() & STATUS_SIG_SYSTEM_ERROR);
        ConfigSpace rp = rootPortAbove();
        assertEquals(ERR_ROOT_UNCOR_RCV | ERR_ROOT_NONFATAL_RCV,
                rp.read(rp.findExtCapability(EXT_CAP_ID_ERR).orElseThrow() + ERR_ROOT_STATUS, 4));
    }

    @Test
    void aConfigWriteToAnAbsentFunctionIsAMasterAbortAtTheBridgeAbove() {
        PciFunction bridge = fn.upstreamBridge().orElseThrow();
        t.removeHardware(fn, "test unplug");
        assertEquals(0, bridge.configSpace().read(SEC_STATUS, 2) & STATUS_REC_MASTER_ABORT, "reads alone do not");
        fn.configSpace().write(COMMAND, 2, COMMAND_MEMORY);
        assertEquals(STATUS_REC_MASTER_ABORT, bridge.configSpace().read(SEC_STATUS, 2) & STATUS_REC_MASTER_ABORT);
        assertTrue(t.lspciVerbose(bridge).contains("<MAbort+ <SERR- <PERR-"), t.lspciVerbose(bridge));
        bridge.configSpace().write(SEC_STATUS, 2, STATUS_REC_MASTER_ABORT);
        assertEquals(0, bridge.configSpace().read(SEC_STATUS, 2) & STATUS_REC_MASTER_ABORT, "RW1C");
    }

    /** PCIe Base Spec 6.6.2 and 7.4: FLR leaves sticky (RW1CS, RWS, ROS) bits alone, the RW1C Device Status not. */
    @Test
    void theAerLogSurvivesAFunctionLevelResetDeviceStatusDoesNot() {
        int mask = fn.configSpace().findExtCapability(EXT_CAP_ID_ERR).orElseThrow() + ERR_UNCOR_MASK;
        fn.configSpace().write(mask, 4, ERR_UNC_COMP_ABORT);
        fn.setMemorySpace(false);
        bar.mmio().write(0, 4, 1);
        int header = aer(ERR_HEADER_LOG);
        assertTrue(fn.hasFlr());
        fn.flr();
        assertEquals(ERR_UNC_UNSUP, aer(ERR_UNCOR_STATUS));
        assertEquals(ERR_UNC_COMP_ABORT, aer(ERR_UNCOR_MASK), "RWS");
        assertEquals(20, aer(ERR_CAP) & ERR_CAP_FEP, "ROS");
        assertEquals(header, aer(ERR_HEADER_LOG));
        assertEquals(0, devsta(), "Device Status is RW1C but not sticky");
        assertEquals(0, fn.configSpace().command() & COMMAND_MEMORY, "the rest resets");
    }

    @Test
    void realLspciDecodesTheLoggedUnsupportedRequest() throws Exception {
        ExternalTool lspci = ExternalTool.require("lspci",
                "apt-get install pciutils (Debian, Ubuntu), dnf install pciutils (Fedora)");
        fn.setMemorySpace(false);
        bar.mmio().write(0, 4, 1);
        Path dump = Files.writeString(dir.resolve("dump"), t.lspciHex(fn, ConfigSpace.SIZE));
        String out = lspci.run(Duration.ofSeconds(60), "-F", dump.toString(), "-vvv");
        assertTrue(out.lines().anyMatch(l -> l.contains("UESta:") && l.contains("UnsupReq+")), out);
        assertTrue(out.lines().anyMatch(l -> l.contains("DevSta:") && l.contains("UnsupReq+")), out);
        assertTrue(t.lspciVerbose(fn).lines().anyMatch(l -> l.contains("UESta:") && l.contains("UnsupReq+")));
    }

    /**
     * A peer's request into a BAR of a function that does not decode memory (the DMA layer's Unsupported Request,
     * {@link PciTopology#unsupportedRequest}): the real lspci reads the completer's UESta and Header Log with the
     * requester's ID, and the requester's Received Master Abort for its read.
     */
    @Test
    void realLspciDecodesAPeersUnsupportedRequest() throws Exception {
        ExternalTool lspci = ExternalTool.require("lspci",
                "apt-get install pciutils (Debian, Ubuntu), dnf install pciutils (Fedora)");
        PciFunction gpu = t.function("03:00.0");
        PciFunction hca = t.function("04:00.0");
        long addr = gpu.bars().getFirst().address() + 0x40;
        gpu.setMemorySpace(false);
        t.unsupportedRequest(hca, addr, 4, true);
        t.unsupportedRequest(hca, addr, 8, false);
        Path gpuDump = Files.writeString(dir.resolve("gpu"), t.lspciHex(gpu, ConfigSpace.SIZE));
        String out = lspci.run(Duration.ofSeconds(60), "-F", gpuDump.toString(), "-vvv");
        assertTrue(out.lines().anyMatch(l -> l.contains("UESta:") && l.contains("UnsupReq+")), out);
        assertTrue(out.lines().anyMatch(l -> l.contains("CESta:") && l.contains("AdvNonFatalErr+")), out);
        String header = String.format("HeaderLog: 40000001 %08x %08x 00000000", hca.bdf().requesterId() << 16 | 0xf,
                (int) addr);
        assertTrue(out.contains(header), header + " in\n" + out);
        Path hcaDump = Files.writeString(dir.resolve("hca"), t.lspciHex(hca, ConfigSpace.SIZE));
        String req = lspci.run(Duration.ofSeconds(60), "-F", hcaDump.toString(), "-vvv");
        assertTrue(req.lines().anyMatch(l -> l.contains("Status:") && l.contains("<MAbort+")), req);
        assertTrue(t.lspciVerbose(gpu).contains(header), t.lspciVerbose(gpu));
    }
}
