package dev.dmaplane.driver.crc.model;

import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciReset;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.Random;
import java.util.zip.CRC32C;

import static dev.dmaplane.driver.crc.model.CrcRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The {@code crc} model as a driver programs it, register by register: a command ring in coherent memory, the
 * doorbell, CRC32C (RFC 3720 appendix B.4, {@link CRC32C}) of real bytes read by DMA through the IOMMU, DMA faults as
 * command statuses, the MSI-X completion message ({@code drivers/pci/msi/}), and reset to power-on values as a
 * Function Level Reset leaves a device (PCIe Base Spec 6.6.2).
 */
class CrcModelTest {
    static final String CRC = "0000:02:00.0";

    private Machine machine;
    private PciFunction fn;
    private Bar.Mmio regs;
    private ModelDevice device;
    private CoherentBuffer ring;
    private final IrqTrigger irq = new IrqTrigger();
    private long tail;

    @BeforeEach
    void boot() {
        machine = Machine.boot(TopologyLoader.load(TestMachines.text(TestMachines.SMALL_CRC), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT.withClassPathModels(false));
        fn = machine.pci().function(CRC);
        assertEquals("device model 'crc' is not loaded", fn.absence().orElseThrow(), "no model, no hardware");
        machine.addModel(new DeviceModel() {
            @Override
            public String name() {
                return CrcModel.NAME;
            }

            @Override
            public ModelDevice realize(ModelContext ctx) {
                device = new CrcModel().realize(ctx);
                return device;
            }
        });
        assertTrue(fn.isPresent());
        regs = fn.bar(0).orElseThrow().mmio();
        fn.setMemorySpace(true);
        fn.setMaster(true);
        ring = fn.dma().allocCoherent(8L * CMD_SIZE);
    }

    @AfterEach
    void close() {
        machine.close();
    }

    private void enable() {
        regs.write(REG_RING_BASE, 8, ring.dmaAddress());
        regs.write(REG_RING_SIZE, 8, 8);
        regs.write(REG_CTRL, 8, CTRL_ENABLE);
    }

    /** Fills the next command, rings the doorbell and returns the command as the engine left it. */
    private MemorySegment run(long src, int len, int flags) {
        MemorySegment cmd = ring.cpu().asSlice((tail & 7) * CMD_SIZE, CMD_SIZE);
        cmd.set(ValueLayout.JAVA_LONG, CMD_SRC, src);
        cmd.set(ValueLayout.JAVA_INT, CMD_LEN, len);
        cmd.set(ValueLayout.JAVA_INT, CMD_FLAGS, flags);
        cmd.set(ValueLayout.JAVA_INT, CMD_STATUS, ST_PENDING);
        regs.write(REG_DOORBELL, 8, ++tail);
        return cmd;
    }

    /** {@code len} seeded random bytes in fresh host pages, mapped for the device. */
    private long mapped(byte[] bytes) {
        int order = 64 - Long.numberOfLeadingZeros((bytes.length - 1L) >> HostMemory.PAGE_SHIFT);
        long phys = machine.memory().allocPages(order) << HostMemory.PAGE_SHIFT;
        MemorySegment.copy(bytes, 0, machine.memory().slice(phys, bytes.length), ValueLayout.JAVA_BYTE, 0, bytes.length);
        return fn.dma().mapSingle(phys, bytes.length, DmaDirection.TO_DEVICE);
    }

    private static byte[] bytes(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    private static int crc32c(byte[] b, int from, int to) {
        CRC32C c = new CRC32C();
        c.update(b, from, to - from);
        return (int) c.getValue();
    }

    @Test
    void registersTakeTheRingOnlyWhileDisabledAndReadBack() {
        assertEquals(ID_VALUE, regs.read(REG_ID, 8));
        assertEquals(List.of(0L, 0L, 0L, 0L), List.of(regs.read(REG_CTRL, 8), regs.read(REG_RING_BASE, 8),
                regs.read(REG_RING_SIZE, 8), regs.read(REG_HEAD, 8)), "power-on values");
        regs.write(REG_RING_SIZE, 8, 6);
        assertEquals(0, regs.read(REG_RING_SIZE, 8), "not a power of two: dropped");
        regs.write(REG_RING_BASE, 8, ring.dmaAddress() + 5);
        assertEquals(ring.dmaAddress(), regs.read(REG_RING_BASE, 8), "the low bits of the base are ignored");
        enable();
        regs.write(REG_RING_BASE, 8, 0x1000);
        regs.write(REG_RING_SIZE, 8, 4);
        assertEquals(List.of(ring.dmaAddress(), 8L), List.of(regs.read(REG_RING_BASE, 8), regs.read(REG_RING_SIZE, 8)),
                "an enabled engine keeps its ring");
        assertEquals(0, regs.read(REG_DOORBELL, 8), "the doorbell reads as zero");
        assertEquals(0xFFFF_FFFFL, regs.read(REG_ID, 4), "a 4-byte read of a 64-bit register hits no register");
    }

    @Test
    void theEngineComputesTheCrc32cOfTheRealBytes() {
        enable();
        byte[] data = bytes(200_000, 42); // several pages
        long bus = mapped(data);
        MemorySegment cmd = run(bus, data.length, 0);
        assertEquals(ST_OK, cmd.get(ValueLayout.JAVA_INT, CMD_STATUS));
        assertEquals(crc32c(data, 0, data.length), cmd.get(ValueLayout.JAVA_INT, CMD_RESULT));

        MemorySegment tail = run(bus + 1000, data.length - 1000, 0);
        assertEquals(crc32c(data, 1000, data.length), tail.get(ValueLayout.JAVA_INT, CMD_RESULT), "a source mid-page");
        assertEquals(2L, regs.read(REG_HEAD, 8));
        assertEquals(0xe3069283, crc32c("123456789".getBytes(), 0, 9), "RFC 3720's check value, for the record");
    }

    @Test
    void aSourceFaultIsACommandStatusAndTheEngineGoesOn() {
        enable();
        MemorySegment unmapped = run(0x7_0000_0000L, 4096, 0);
        assertEquals(ST_READ_FAULT, unmapped.get(ValueLayout.JAVA_INT, CMD_STATUS), "the IOMMU refused the read");
        assertEquals(0, unmapped.get(ValueLayout.JAVA_INT, CMD_RESULT));
        MemorySegment ownBar = run(fn.bar(0).orElseThrow().address(), 64, 0);
        assertEquals(ST_READ_FAULT, ownBar.get(ValueLayout.JAVA_INT, CMD_STATUS), "no DMA into its own registers");
        MemorySegment empty = run(ring.dmaAddress(), 0, 0);
        assertEquals(ST_BAD_COMMAND, empty.get(ValueLayout.JAVA_INT, CMD_STATUS));
        byte[] data = bytes(64, 1);
        MemorySegment ok = run(mapped(data), 64, 0);
        assertEquals(crc32c(data, 0, 64), ok.get(ValueLayout.JAVA_INT, CMD_RESULT));
        assertEquals(List.of(CTRL_ENABLE, 4L), List.of(regs.read(REG_CTRL, 8), regs.read(REG_HEAD, 8)));
    }

    @Test
    void aFaultingCommandFetchHaltsTheEngineUntilReset() {
        regs.write(REG_RING_BASE, 8, 0x7_0000_0000L);
        regs.write(REG_RING_SIZE, 8, 8);
        regs.write(REG_CTRL, 8, CTRL_ENABLE);
        regs.write(REG_DOORBELL, 8, 1);
        assertEquals(CTRL_ENABLE | CTRL_HALTED, regs.read(REG_CTRL, 8));
        assertEquals(0, regs.read(REG_HEAD, 8), "the command was not taken");
        regs.write(REG_CTRL, 8, CTRL_RESET);
        assertEquals(0, regs.read(REG_CTRL, 8), "reset clears the halt");
        enable();
        regs.write(REG_DOORBELL, 8, 9);
        assertEquals(CTRL_ENABLE | CTRL_HALTED, regs.read(REG_CTRL, 8), "a doorbell more than a ring ahead halts");
    }

    @Test
    void aCommandAskingForAnInterruptSignalsMsixVectorZero() {
        IrqVectors irqs = IrqVectors.alloc(fn, 1, 1, IrqVectors.PCI_IRQ_MSIX);
        irqs.requestTrigger(IRQ_VECTOR, irq, "crc-test");
        enable();
        long bus = mapped(bytes(128, 3));
        run(bus, 128, 0);
        assertEquals(0, irq.count(), "no interrupt asked for");
        run(bus, 128, FLAG_INTERRUPT);
        run(0x7_0000_0000L, 128, FLAG_INTERRUPT);
        assertEquals(2, irq.count(), "one message per command asking, the faulted one included");
        assertEquals(2, irqs.interrupts(IRQ_VECTOR));
        irqs.close();
    }

    @Test
    void resetReturnsEveryRegisterToItsPowerOnValue() {
        enable();
        run(mapped(bytes(10, 5)), 10, 0);
        assertEquals(1, regs.read(REG_HEAD, 8));
        device.reset(PciReset.FLR);
        assertEquals(List.of(0L, 0L, 0L, 0L), List.of(regs.read(REG_CTRL, 8), regs.read(REG_RING_BASE, 8),
                regs.read(REG_RING_SIZE, 8), regs.read(REG_HEAD, 8)));
        regs.write(REG_DOORBELL, 8, 1);
        assertEquals(0, regs.read(REG_HEAD, 8), "a disabled engine ignores its doorbell");
    }
}
