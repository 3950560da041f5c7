package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.ValueLayout;
import java.time.Duration;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The channel against the emulated engine: ring setup, completion by polling, halts, reset, teardown. */
class CopyEngineChannelTest {
    static final Duration TIMEOUT = Duration.ofSeconds(1);

    Machine machine;

    @AfterEach
    void close() {
        machine.close();
    }

    private PciFunction gpu() {
        machine = Machine.bootDefault();
        PciFunction fn = machine.pci().function("0000:03:00.0");
        fn.setMemorySpace(true);
        fn.setMaster(true);
        return fn;
    }

    @Test
    void aFillCompletesAndABadDescriptorHaltsUntilReset() {
        PciFunction fn = gpu();
        Bar.Mmio regs = fn.bar(0).orElseThrow().mmio();
        try (CopyEngineChannel ch = CopyEngineChannel.open(regs, fn.dma(), 4, TIMEOUT)) {
            assertEquals(ch.ringIova(), regs.read(REG_RING_BASE, 8));
            assertEquals(4, regs.read(REG_RING_SIZE, 8));
            CoherentBuffer buf = fn.dma().allocCoherent(4096);
            for (int i = 0; i < 6; i++) { // more than the ring holds: the indices wrap
                assertEquals(ST_OK, ch.submit(0x40 + i, buf.dmaAddress(), 4096, FLAG_FILL, i));
                assertEquals(0x40 + i, buf.cpu().get(ValueLayout.JAVA_BYTE, 4095));
            }
            assertEquals(6, ch.completed());

            assertEquals(ST_BAD_DESC, ch.submit(buf.dmaAddress(), buf.dmaAddress(), 0, 0, 9), "length 0");
            assertTrue(ch.halted());
            ErrnoException e = assertThrows(ErrnoException.class, () -> ch.submit(0x11, buf.dmaAddress(), 8, FLAG_FILL, 10));
            assertEquals(Errno.EIO, e.errno(), "a halted engine is refused at once, not waited for");
            ch.reset();
            assertEquals(ST_OK, ch.submit(0x22, buf.dmaAddress(), 8, FLAG_FILL, 11));
            assertEquals(1, ch.completed());
            fn.dma().freeCoherent(buf);
        }
        assertEquals(0, regs.read(REG_STATUS, 8), "closed: disabled");
        assertEquals(0, machine.activeDmaMappings(), "the ring is freed");
    }

    @Test
    void aDeviceThatDoesNotTakeTheRingFailsWithEioAndFreesIt() {
        machine = Machine.boot(TopologyLoader.load(DmaTestDriverTest.machineWith("{ enabled: true }",
                DmaTestDriverTest.endpoint("vendor: \"0x1da0\"\ndevice: \"0x0001\"\nclass: \"0x030200\"", "")),
                TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
        PciFunction fn = machine.pci().function("01:00.0");
        long frames = machine.memory().allocatedFrames();
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> CopyEngineChannel.open(fn.bar(0).orElseThrow().mmio(), fn.dma(), 4, TIMEOUT));
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().contains("did not take the ring"), e.getMessage());
        assertEquals(0, machine.activeDmaMappings());
        assertEquals(frames, machine.memory().allocatedFrames());
    }

    @Test
    void ringSizeMustBeAPowerOfTwo() {
        PciFunction fn = gpu();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> CopyEngineChannel.open(fn.bar(0).orElseThrow().mmio(), fn.dma(), 48, TIMEOUT)).errno());
        assertEquals(0, machine.activeDmaMappings());
    }
}
