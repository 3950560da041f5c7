package dev.dmaplane.machine;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.pci.ConfigSpace;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pcie.PortDriver;
import dev.dmaplane.testing.ExternalTool;
import dev.dmaplane.testing.TestMachines;
import dev.dmaplane.trace.TraceEvent;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The AER port service as {@code drivers/pci/pcie/portdrv.c} ({@code pcieport}, bound to every port) and {@code drivers/pci/pcie/aer.c} run it: bound to a
 * root port, it enables reporting and Root Error Command ({@code aer_enable_rootport}); a device's DMA into a BAR that
 * does not decode (an Unsupported Request, PCIe Base Spec 6.2.5) reaches the root port as ERR_NONFATAL, whose MSI
 * (7.8.4.9, 6.2.4.1.2) runs {@code aer_isr}: Root Error Status read and cleared, the source found by Error Source
 * Identification, its status and header log printed as {@code aer_print_error} prints them with the requester's BDF,
 * its status cleared (RW1C), and the bound driver's {@code error_detected} and {@code resume} run
 * ({@code pcie_do_recovery} in {@code drivers/pci/pcie/err.c}). The real {@code lspci -vvv} reads the cleared registers.
 */
class AerServiceTest {
    private final Machine m = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);

    @TempDir
    Path dir;

    @AfterEach
    void close() {
        m.close();
        assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().equals("irq/0-aerdrv")),
                "the service's interrupt thread stopped with the machine");
    }

    @Test
    void aDmaNobodyDecodesIsHandledByTheAerServiceOfTheRootPort() throws Exception {
        PciFunction target = m.pci().function("03:00.0");
        PciFunction hca = m.pci().function("04:00.0");
        PciFunction port = m.pci().function("00:01.0");
        CountDownLatch resumed = new CountDownLatch(1);
        AtomicReference<BoundDevice.ChannelState> detected = new AtomicReference<>();
        m.devices().unbind(target);
        m.devices().registerDriver(new Driver() {
            @Override
            public String name() {
                return "aer-test";
            }

            @Override
            public MatchTable matchTable() {
                return MatchTable.of(MatchEntry.Pci.of(target.configSpace().vendorId(), target.configSpace().deviceId()));
            }

            @Override
            public BoundDevice probe(Device device, MatchEntry match) {
                return new BoundDevice() {
                    @Override
                    public void remove() {
                    }

                    @Override
                    public ErsResult errorDetected(ChannelState state) {
                        detected.set(state);
                        return ErsResult.CAN_RECOVER;
                    }

                    @Override
                    public void resume() {
                        resumed.countDown();
                    }
                };
            }
        });
        m.devices().registerDriver(new PortDriver(m.pci(), m.tracer()));
        assertEquals("pcieport", port.driver().orElseThrow().name());
        assertEquals("pcieport", m.pci().function("02:00.0").driver().orElseThrow().name(), "a switch port, without services");
        assertEquals("aer-test", target.driver().orElseThrow().name());

        hca.setMaster(true);
        hca.dma().setDmaMask(-1L);
        BusMaster dev = hca.dma().busMaster();
        target.setMemorySpace(false);
        long addr = target.bar(2).orElseThrow().address() + 0x2000;
        assertThrows(DmaFaultException.class, () -> dev.write(addr, MemorySegment.ofArray(new byte[16])));

        assertTrue(resumed.await(30, TimeUnit.SECONDS), "the AER service ran the driver's resume");
        assertEquals(BoundDevice.ChannelState.NORMAL, detected.get());
        List<TraceEvent> events = m.tracer().select(e -> e.kind() == TraceKind.PCIE_ERROR);
        assertEquals(1, events.size(), events.toString());
        String text = events.getFirst().detail();
        assertTrue(text.contains("severity=Uncorrectable (Non-Fatal), source " + target.bdf()), text);
        assertTrue(text.contains("[20] UnsupReq"), text);
        assertTrue(text.contains("requester " + hca.bdf()), text);
        assertTrue(text.contains(String.format("%08x", (int) addr)), text);

        ConfigSpace rp = port.configSpace();
        int rpAer = rp.findExtCapability(EXT_CAP_ID_ERR).orElseThrow();
        assertEquals(0, rp.read(rpAer + ERR_ROOT_STATUS, 4) & (ERR_ROOT_UNCOR_RCV | ERR_ROOT_NONFATAL_RCV));
        ConfigSpace cs = target.configSpace();
        assertEquals(0, cs.read(cs.findExtCapability(EXT_CAP_ID_ERR).orElseThrow() + ERR_UNCOR_STATUS, 4));
        assertEquals(0, cs.read(cs.findCapability(CAP_ID_EXP).orElseThrow() + EXP_DEVSTA, 2) & 0xF);

        ExternalTool lspci = ExternalTool.require("lspci",
                "apt-get install pciutils (Debian, Ubuntu), dnf install pciutils (Fedora)");
        Path rpDump = Files.writeString(dir.resolve("rp"), m.pci().lspciHex(port, ConfigSpace.SIZE));
        String rpOut = lspci.run(Duration.ofSeconds(60), "-F", rpDump.toString(), "-vvv");
        assertTrue(rpOut.contains("RootCmd: CERptEn+ NFERptEn+ FERptEn+"), rpOut);
        assertTrue(rpOut.contains("RootSta: CERcvd- MultCERcvd- UERcvd- MultUERcvd-"), rpOut);
        assertTrue(rpOut.contains("MSI: Enable+ Count=1/1"), rpOut);
        Path dump = Files.writeString(dir.resolve("target"), m.pci().lspciHex(target, ConfigSpace.SIZE));
        String out = lspci.run(Duration.ofSeconds(60), "-F", dump.toString(), "-vvv");
        assertTrue(out.lines().anyMatch(l -> l.contains("UESta:") && l.contains("UnsupReq-")), out);
        assertTrue(out.lines().anyMatch(l -> l.contains("DevCtl:") && l.contains("UnsupReq+")), out);
        assertTrue(out.contains("HeaderLog: "), out);
    }
}
