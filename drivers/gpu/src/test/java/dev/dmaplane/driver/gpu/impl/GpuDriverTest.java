package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.accel.sched.SchedEntity;
import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.irq.IrqVectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;

import static dev.dmaplane.driver.gpu.impl.DriverRig.await;
import static dev.dmaplane.testing.Eventually.eventually;
import static dev.dmaplane.driver.gpu.model.GpuRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The GPU driver's probe, submission and remove: probe in the order of {@code Documentation/PCI/pci.rst} and
 * amdgpu's {@code amdgpu_device_init} (rings in coherent memory, one MSI-X vector per engine, drm_sched per ring),
 * copies and fills through drm_sched with real bytes ({@code amdgpu_ttm.c} {@code amdgpu_copy_buffer},
 * {@code amdgpu_fill_buffer}), in-order completion of one entity's jobs ({@code sched_entity.c},
 * {@code drivers/gpu/drm/scheduler/tests/tests_basic.c}), and unbind cancelling what is queued
 * ({@code drm_sched_fini}) with nothing left behind.
 */
class GpuDriverTest {
    private final DriverRig rig = new DriverRig();

    @AfterEach
    void close() {
        rig.close();
    }

    @Test
    void probeEnablesEachEngineWithItsVectorAndRing() {
        BoundGpu gpu = rig.gpu();
        assertEquals(1L << 30, gpu.vramSize());
        assertEquals(256L << 20, gpu.visibleVramSize());
        IrqVectors irqs = IrqVectors.of(rig.fn).orElseThrow();
        assertEquals(ENGINE_COUNT, irqs.count());
        assertTrue(rig.fn.busMasterEnabled());
        var regs = rig.fn.bar(0).orElseThrow().mmio();
        for (int e = 0; e < ENGINE_COUNT; e++) {
            assertEquals(CTRL_ENABLE, regs.read(engineBase(e) + RING_CTRL, 8), ENGINE_NAMES[e] + " enabled");
            assertEquals(e, regs.read(engineBase(e) + RING_IRQ_VECTOR, 8));
        }
        assertEquals(ENGINE_COUNT, rig.machine.activeDmaMappings(rig.fn), "the three rings");
        assertEquals(2 * ENGINE_COUNT, DriverRig.gpuThreads().size(), DriverRig.gpuThreads().toString());
        assertEquals("gpu.dma.0", gpu.auxDevice().name());
        assertEquals(new GpuRun(Aperture.VRAM, (256L << 20) - (8L << 20), 8L << 20), gpu.reservedVram(),
                "the page tables' VRAM: the top 8 MiB of the visible window");
    }

    @Test
    void copyAndFillThroughTheSchedulerMoveRealBytes() {
        BoundGpu gpu = rig.gpu();
        byte[] data = DriverRig.random(300_000, 3);
        DriverRig.HostBuffer src = rig.host(data.length);
        DriverRig.HostBuffer dst = rig.host(data.length);
        src.put(data);
        SchedEntity entity = gpu.entity(ENGINE_CE0, SchedPriority.NORMAL);
        long vram = 1L << 20;
        Fence in = gpu.submit(entity, GpuJob.of(new GpuCommand.Copy(0, src.run().gpuAddress(), vram, data.length)));
        Fence out = gpu.submit(entity, GpuJob.of(new GpuCommand.Copy(0, vram, dst.run().gpuAddress(), data.length)));
        await(out);
        assertEquals(Optional.empty(), in.error());
        assertEquals(Optional.empty(), out.error());
        assertArrayEquals(data, rig.readVram(vram, data.length));
        assertArrayEquals(data, dst.bytes());

        Fence fill = gpu.submit(entity, GpuJob.of(new GpuCommand.Fill(0, vram + 10, 1000, 0xA1B2C3D4)));
        await(fill);
        byte[] filled = rig.readVram(vram + 10, 1000);
        byte[] pattern = {(byte) 0xD4, (byte) 0xC3, (byte) 0xB2, (byte) 0xA1};
        for (int i = 0; i < filled.length; i++) {
            assertEquals(pattern[i % 4], filled[i], "byte " + i);
        }
        assertEquals(data[9], rig.readVram(vram + 9, 1)[0], "the fill stopped at its start");
    }

    /**
     * One interrupt per job, from its last descriptor, as amdgpu's fence packet after the IBs
     * ({@code amdgpu_fence_emit} with {@code AMDGPU_FENCE_FLAG_INT}); the descriptors before it write back their
     * seqno only.
     */
    @Test
    void aJobOfEightDescriptorsRaisesOneInterrupt() {
        BoundGpu gpu = rig.gpu();
        SchedEntity entity = gpu.entity(ENGINE_CE0, SchedPriority.NORMAL);
        IrqVectors irqs = IrqVectors.of(rig.fn).orElseThrow();
        await(gpu.submit(entity, GpuJob.of(new GpuCommand.Fill(0, 0, 4096, 1))));
        long before = irqs.interrupts(ENGINE_CE0);
        List<GpuCommand> fills = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            fills.add(new GpuCommand.Fill(0, (4L << 20) + 4096L * i, 4096, 0x0101_0101 * (i + 1)));
        }
        Fence f = gpu.submit(entity, GpuJob.of(fills.toArray(GpuCommand[]::new)));
        await(f);
        assertEquals(Optional.empty(), f.error());
        assertEquals(before + 1, irqs.interrupts(ENGINE_CE0), "the last descriptor's interrupt only");
        assertEquals(8, rig.readVram((4L << 20) + 7 * 4096, 1)[0], "every descriptor ran");
    }

    @Test
    void aHundredJobsOfOneEntityFinishInOrder() {
        BoundGpu gpu = rig.gpu();
        SchedEntity entity = gpu.entity(ENGINE_CE1, SchedPriority.NORMAL);
        List<Long> order = new CopyOnWriteArrayList<>();
        List<Fence> fences = new ArrayList<>();
        for (int i = 0; i < 100; i++) {
            Fence f = gpu.submit(entity, GpuJob.of(new GpuCommand.Fill(0, 2L << 20, 4096, i)));
            fences.add(f);
            long seq = f.seqno();
            if (!f.addCallback(x -> order.add(seq))) {
                order.add(seq); // signalled already, so after every fence before it
            }
        }
        await(fences.getLast());
        eventually(() -> order.size() == fences.size(), DriverRig.WAIT, "every callback ran");
        fences.forEach(f -> assertTrue(f.isSignaled() && f.error().isEmpty(), f.toString()));
        assertEquals(fences.stream().map(Fence::seqno).toList(), order);
        byte[] last = rig.readVram(2L << 20, 4);
        assertArrayEquals(new byte[] {99, 0, 0, 0}, last, "the last fill ran last");
    }

    @Test
    void unbindCancelsQueuedJobsAndLeavesNothing() {
        BoundGpu gpu = rig.gpu();
        SchedEntity compute = gpu.entity(ENGINE_COMPUTE, SchedPriority.NORMAL);
        SchedEntity copy = gpu.entity(ENGINE_CE0, SchedPriority.NORMAL);
        Fence spin = gpu.submit(compute, GpuJob.of(new GpuCommand.Spin(0)));
        List<Fence> queued = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            queued.add(gpu.submit(compute, GpuJob.of(new GpuCommand.Spin(0))));
        }
        queued.add(gpu.submit(copy, GpuJob.of(new GpuCommand.Fill(0, 0, 4096, 1))));
        rig.machine.devices().unregisterDriver(rig.driver);
        assertTrue(spin.isSignaled());
        assertEquals(Optional.of(Errno.ECANCELED), spin.error(), "the running job was cancelled");
        for (Fence f : queued.subList(0, 5)) {
            assertTrue(f.isSignaled());
            assertEquals(Optional.of(Errno.ECANCELED), f.error(), f.toString());
        }
        assertTrue(queued.getLast().isSignaled());
        assertNothingLeft();
    }

    private void assertNothingLeft() {
        assertEquals(List.of(), DriverRig.gpuThreads());
        assertEquals(0, rig.machine.activeDmaMappings(rig.fn), "rings freed");
        assertEquals(Optional.empty(), IrqVectors.of(rig.fn));
        assertEquals(0, rig.fn.devres().size());
        assertFalse(rig.fn.busMasterEnabled());
        assertTrue(rig.machine.devices().findDevice("gpu.dma.0").isEmpty(), "the auxiliary device went");
        assertEquals(Optional.empty(), rig.driver.gpu(DriverRig.GPU));
    }
}
