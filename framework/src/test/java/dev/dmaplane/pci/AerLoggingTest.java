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

import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A function that receives a memory request while it decodes no memory logs an Unsupported Request (PCIe Base Spec
 * 7.5.1.1.3 Memory Space Enable, 6.2.5 error logging, 6.2.3.2.4.1 Advisory Non-Fatal for a non-posted request at
 * non-fatal severity; the registers {@code drivers/pci/pcie/aer.c} reads in {@code aer_get_device_error_info}), and
 * an access its registers refuse as a violation of their programming model is a Completer Abort (2.3.1), which also
 * sets Signaled Target Abort in Status (7.5.1.1.4).
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
}
