package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.irq.IrqReturn;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Hung jobs and resets, as {@code drm_sched}'s timeout handling needs them ({@code sched_main.c}
 * {@code drm_sched_job_timedout} leading to a driver's engine reset, {@code drivers/gpu/drm/scheduler/tests/
 * tests_basic.c} timeout cases): a SPIN kernel runs until its engine is reset and the engine then works again; a
 * Function Level Reset (PCIe Base Spec 6.6.2) returns the whole GPU to power-on; a device leaving stops every one of
 * its threads.
 */
class GpuResetTest {
    private GpuRig rig;

    @BeforeEach
    void boot() {
        rig = new GpuRig();
    }

    @AfterEach
    void close() {
        rig.close();
        assertEquals(0, GpuRig.gpuThreads(), "no engine thread outlives the machine");
    }

    private void awaitBusy(int e) {
        eventually(() -> (rig.reg(e, RING_CTRL) & CTRL_BUSY) != 0, GpuRig.WAIT, ENGINE_NAMES[e] + " never started");
    }

    @Test
    void aSpinningKernelStopsAtAnEngineResetAndTheEngineWorksAgain() {
        Thread engineThread = rig.device.threads().get(ENGINE_COMPUTE);
        long before = rig.reg(ENGINE_COMPUTE, RING_COMPLETED_SEQNO);
        MemorySegment spin = rig.submit(ENGINE_COMPUTE, OP_KERNEL, FLAG_PHYSICAL | FLAG_INTERRUPT, 0, KERNEL_SPIN);
        awaitBusy(ENGINE_COMPUTE);
        long spinSeqno = rig.lastSeqno();
        GpuRig.HostBuffer out = rig.host(4096, DmaDirection.BIDIRECTIONAL);
        MemorySegment queued = rig.submit(ENGINE_COMPUTE, OP_KERNEL, FLAG_PHYSICAL, 0, KERNEL_SUM, out.gpuAddr(),
                out.gpuAddr() + 64, 4);
        assertEquals(1L << STATUS_BUSY + ENGINE_COMPUTE, rig.regs.read(REG_STATUS, 8) & 0xFF);

        rig.resetEngine(ENGINE_COMPUTE); // returns once the job has stopped
        assertEquals(CTRL_ENABLE, rig.reg(ENGINE_COMPUTE, RING_CTRL), "idle, enabled, not halted");
        assertEquals(rig.reg(ENGINE_COMPUTE, RING_TAIL), rig.reg(ENGINE_COMPUTE, RING_HEAD), "head := tail");
        assertEquals(List.of(ST_PENDING, ST_PENDING), List.of(spin.get(GpuRig.U32, DESC_STATUS),
                queued.get(GpuRig.U32, DESC_STATUS)), "the aborted and the skipped job wrote nothing back");
        assertEquals(List.of(before, before), List.of(rig.reg(ENGINE_COMPUTE, RING_COMPLETED_SEQNO),
                rig.fence(ENGINE_COMPUTE)), "seqno " + spinSeqno + " never completed");
        assertEquals(0, rig.irq[ENGINE_COMPUTE].count(), "an aborted job raises nothing");

        out.cpu().set(GpuRig.U32, 0, Float.floatToRawIntBits(1.5f));
        assertEquals(ST_OK, rig.run(ENGINE_COMPUTE, OP_KERNEL, FLAG_PHYSICAL, 0, KERNEL_SUM, out.gpuAddr(),
                out.gpuAddr() + 64, 1));
        assertEquals(1.5f, Float.intBitsToFloat(out.cpu().get(GpuRig.U32, 64)));
        assertEquals(rig.lastSeqno(), rig.fence(ENGINE_COMPUTE));
        assertSame(engineThread, rig.device.threads().get(ENGINE_COMPUTE), "the thread survived the reset");
        assertTrue(engineThread.isAlive());
    }

    @Test
    void aFunctionLevelResetReturnsTheWholeGpuToPowerOn() {
        PageTables pt = new PageTables(rig.window, 16L << 20);
        rig.regs.write(regVmRoot(2), 8, pt.root);
        GpuRig.HostBuffer buf = rig.host(8192, DmaDirection.BIDIRECTIONAL);
        pt.map(0x4000_0000L, buf.gpuAddr(), 8192, true);
        assertEquals(ST_OK, rig.run(0, OP_FILL, 0, 2, 0x4000_0000L, 8192, 7));
        assertEquals(ST_PAGE_FAULT, rig.run(1, OP_FILL, 0, 2, 0x8000_0000L, 8, 7));
        rig.submit(ENGINE_COMPUTE, OP_KERNEL, FLAG_PHYSICAL, 0, KERNEL_SPIN);
        awaitBusy(ENGINE_COMPUTE);
        assertTrue(rig.device.tlbEntries(0) > 0);

        rig.fn.resetFunction(); // FLR with the config space saved and restored around it

        for (int e = 0; e < ENGINE_COUNT; e++) {
            List<Long> ring = List.of(rig.reg(e, RING_CTRL), rig.reg(e, RING_BASE), rig.reg(e, RING_SIZE),
                    rig.reg(e, RING_HEAD), rig.reg(e, RING_TAIL), rig.reg(e, RING_FENCE_ADDR),
                    rig.reg(e, RING_COMPLETED_SEQNO), rig.reg(e, RING_FAULT_STATUS), rig.reg(e, RING_FAULT_ADDR),
                    rig.reg(e, RING_BUSY_NS), rig.reg(e, RING_JOBS_COMPLETED));
            assertEquals(List.of(0L, 0L, 0L, 0L, 0L, 0L, 0L, 0L, 0L, 0L, 0L), ring, ENGINE_NAMES[e]);
            assertEquals(e, rig.reg(e, RING_IRQ_VECTOR));
            assertEquals(0, rig.device.tlbEntries(e));
        }
        for (int vm = 0; vm < VM_COUNT; vm++) {
            assertEquals(0, rig.regs.read(regVmRoot(vm), 8), "VM " + vm);
        }
        assertEquals(List.of(0L, 0L, 0L, 0L), List.of(rig.regs.read(REG_STATUS, 8),
                rig.regs.read(REG_MMU_FAULT_STATUS, 8), rig.regs.read(REG_MMU_FAULT_ADDR, 8),
                rig.regs.read(REG_MMU_FAULT_COUNT, 8)));
        assertEquals(3, rig.device.threads().stream().filter(Thread::isAlive).count(), "idle threads, not dead ones");

        rig.enable(0);
        GpuRig.HostBuffer dst = rig.host(4096, DmaDirection.FROM_DEVICE);
        assertEquals(ST_OK, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, dst.gpuAddr(), 4096, 0x01010101));
        assertEquals(1, dst.cpu().get(GpuRig.U32, 0) & 0xFF);
    }

    @Test
    void anEngineResetFromItsOwnInterruptHandlerDoesNotWaitForItself() {
        rig.vectors.free(0);
        AtomicReference<Thread> handledOn = new AtomicReference<>();
        rig.vectors.request(0, vector -> {
            if ((rig.reg(0, RING_CTRL) & CTRL_HALTED) != 0) { // amdgpu's fault handler resetting its ring
                handledOn.set(Thread.currentThread());
                rig.resetEngine(0);
            }
            return IrqReturn.HANDLED;
        }, null, "gpu-test-reset");
        long t0 = System.nanoTime();
        MemorySegment d = rig.submit(0, OP_FILL, FLAG_PHYSICAL, 0, APERTURE_SYSTEM | 0x7_0000_0000L, 64, 0);
        eventually(() -> handledOn.get() != null && rig.reg(0, RING_CTRL) == CTRL_ENABLE, GpuRig.WAIT,
                "the handler reset the engine");
        assertEquals(ST_DMA_FAULT, d.get(GpuRig.U32, DESC_STATUS));
        assertSame(rig.device.threads().get(0), handledOn.get(), "the hard handler ran on the engine's thread");
        assertTrue(System.nanoTime() - t0 < TimeUnit.MILLISECONDS.toNanos(Engine.STOP_TIMEOUT_MS / 2),
                "the reset did not wait for the job it is called from");
        assertEquals(CTRL_ENABLE, rig.reg(0, RING_CTRL), "reset from the handler: not halted");
        GpuRig.HostBuffer dst = rig.host(4096, DmaDirection.FROM_DEVICE);
        assertEquals(ST_OK, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, dst.gpuAddr(), 4096, 3));
    }

    @Test
    void theModelLeavingStopsEveryThreadAndFreesHiddenVram() {
        List<Thread> threads = rig.device.threads();
        assertEquals(List.of(GpuRig.GPU + " gpu ce0", GpuRig.GPU + " gpu ce1", GpuRig.GPU + " gpu compute"),
                threads.stream().map(Thread::getName).toList());
        assertEquals(3, GpuRig.gpuThreads());
        assertEquals(ST_OK, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, 900L << 20, 4096, 1));
        assertEquals(Vram.CHUNK, rig.device.hiddenVramCommitted());
        rig.submit(ENGINE_COMPUTE, OP_KERNEL, FLAG_PHYSICAL, 0, KERNEL_SPIN);
        awaitBusy(ENGINE_COMPUTE);

        assertTrue(rig.machine.removeModel(rig.model));

        assertTrue(threads.stream().noneMatch(Thread::isAlive), "quiesce and remove joined the engine threads");
        assertEquals(0, GpuRig.gpuThreads());
        assertFalse(rig.fn.isPresent());
        assertEquals(0, rig.device.hiddenVramCommitted(), "the VRAM beyond the window was freed");
    }
}
