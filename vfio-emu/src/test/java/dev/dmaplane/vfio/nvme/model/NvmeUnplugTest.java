package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeRegs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.vfio.nvme.NvmeCommand.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The controller leaving under a driver with commands queued (a surprise removal, {@code ModelDevice#quiesce} then
 * {@code remove}; the driver's side as {@code nvme_remove} with {@code nvme_dev_disable} seeing CSTS read as all
 * ones, {@code drivers/nvme/host/pci.c}): nothing blocks, the device thread stops, the driver is removed and no
 * DMA mapping is left.
 */
class NvmeUnplugTest {
    private NvmeMachine m;

    @AfterEach
    void close() {
        if (m != null) {
            m.close();
        }
    }

    @Test
    void theModelLeavingWithCommandsQueuedStopsEverything() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Queue q = d.queuePair(2, 16, 2);
        NvmeTestDriver.Buffer b = d.buffer(4096);
        for (int i = 0; i < 8; i++) {
            d.submit(q, NvmeCommand.readWrite(NVM_READ, 0x10 + i, 1, i, 1, b.bus(), 0));
        }
        Controller c = m.controller;
        assertTrue(c.awaitIdle(10, TimeUnit.SECONDS), "one command completed, seven held by the full CQ");
        DeviceModel model = m.model;
        long start = System.nanoTime();
        assertTrue(m.machine.removeModel(model));
        assertTrue(Duration.ofNanos(System.nanoTime() - start).compareTo(Duration.ofSeconds(1)) < 0,
                "the removal took " + Duration.ofNanos(System.nanoTime() - start));
        assertFalse(c.threads().stream().anyMatch(Thread::isAlive), "the engines stopped");
        assertEquals("device model 'nvme' was unloaded", m.fn.absence().orElseThrow());
        assertTrue(m.fn.driver().isEmpty(), "the driver was removed");
        assertEquals(0, m.machine.activeDmaMappings(m.fn), "no mapping left");
        assertEquals(0xFFFF_FFFFL, d.regs.read(NvmeRegs.CSTS, 4), "the registers are gone");
    }
}
