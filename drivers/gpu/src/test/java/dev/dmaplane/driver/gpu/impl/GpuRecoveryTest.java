package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.accel.sched.SchedEntity;
import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.fence.Fence;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicReference;
import java.util.zip.CRC32C;

import static dev.dmaplane.driver.gpu.impl.DriverRig.await;
import static dev.dmaplane.driver.gpu.model.GpuRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Engine recovery as drm_sched documents it ({@code sched_main.c}: {@code drm_sched_stop}, reset,
 * {@code drm_sched_resubmit_jobs}, {@code drm_sched_start}; {@code drm_sched_fault}) and amdgpu does it
 * ({@code amdgpu_job_timedout}: the hung job's fence gets {@code -ETIME}; {@code gmc_v9_0_process_interrupt} for
 * VM faults): a hung SPIN times out, its fence carries ETIME and the job behind it runs; a GPU page fault ends only
 * the faulting job with EFAULT, the engine is reset and later jobs run.
 */
class GpuRecoveryTest {
    private final DriverRig rig = new DriverRig(GpuOptions.DEFAULT.withRingEntries(64)
            .withJobTimeout(Duration.ofMillis(300)));

    @AfterEach
    void close() {
        rig.close();
    }

    private static int crc32c(byte[] b) {
        CRC32C c = new CRC32C();
        c.update(b);
        return (int) c.getValue();
    }

    private int vramU32(long offset) {
        return ByteBuffer.wrap(rig.readVram(offset, 4)).order(ByteOrder.LITTLE_ENDIAN).getInt();
    }

    @Test
    void aHungJobTimesOutWithEtimeAndTheNextJobRuns() {
        BoundGpu gpu = rig.gpu();
        byte[] data = DriverRig.random(70_000, 9);
        DriverRig.HostBuffer src = rig.host(data.length);
        src.put(data);
        SchedEntity entity = gpu.entity(ENGINE_COMPUTE, SchedPriority.NORMAL);
        Fence spin = gpu.submit(entity, GpuJob.of(new GpuCommand.Spin(0)));
        Fence next = gpu.submit(entity, GpuJob.of(new GpuCommand.Crc32c(0, src.run().gpuAddress(), 0x1000, data.length,
                0)));
        await(next);
        assertTrue(spin.isSignaled());
        assertEquals(Optional.of(Errno.ETIME), spin.error(), "the hung job is guilty");
        assertEquals(Optional.empty(), next.error(), "the job behind it was resubmitted and ran");
        assertEquals(crc32c(data), vramU32(0x1000));

        Fence after = gpu.submit(entity, GpuJob.of(new GpuCommand.Crc32c(0, src.run().gpuAddress(), 0x2000, 100, 0)));
        await(after);
        assertEquals(Optional.empty(), after.error());
        byte[] head = new byte[100];
        System.arraycopy(data, 0, head, 0, 100);
        assertEquals(crc32c(head), vramU32(0x2000), "the engine serves new jobs after the reset");
    }

    @Test
    void aPageFaultEndsOnlyTheFaultingJobWithEfault() {
        BoundGpu gpu = rig.gpu();
        GpuAddressSpace vm = gpu.createVm();
        byte[] data = DriverRig.random(8192, 4);
        DriverRig.HostBuffer src = rig.host(data.length);
        src.put(data);
        long va = 0x10_0000_0000L;
        vm.map(va, List.of(src.run()), false);
        vm.map(va + 0x10_0000, List.of(new GpuRun(Aperture.VRAM, 0x30_0000, 4096)), true);
        SchedEntity entity = gpu.entity(ENGINE_COMPUTE, SchedPriority.NORMAL);
        AtomicReference<HwFault> seen = new AtomicReference<>();
        long unmapped = va + 0x20_0000;
        Fence bad = gpu.submit(entity, new GpuJob(List.of(new GpuCommand.Crc32c(vm.slot(), unmapped,
                va + 0x10_0000, 4096, 0)), seen::set));
        Fence good = gpu.submit(entity, GpuJob.of(new GpuCommand.Crc32c(vm.slot(), va, va + 0x10_0000,
                data.length, 0)));
        await(good);
        assertEquals(Optional.of(Errno.EFAULT), bad.error());
        assertEquals(Optional.empty(), good.error(), "the engine was reset and served the next job");
        assertEquals(crc32c(data), vramU32(0x30_0000));
        HwFault f = seen.get();
        assertNotNull(f, "the fault registers were read");
        assertEquals(ST_PAGE_FAULT, f.status());
        assertEquals(unmapped, f.address());
        assertEquals(unmapped, f.mmuAddress());
        assertEquals(vm.slot(), (f.mmuStatus() >>> MMU_FAULT_VM_SHIFT) & 0xFF);
        assertEquals(FAULT_NOT_PRESENT, (f.mmuStatus() >>> MMU_FAULT_REASON_SHIFT) & 0xFF);
        var regs = rig.fn.bar(0).orElseThrow().mmio();
        assertEquals(0, regs.read(REG_MMU_FAULT_STATUS, 8) & MMU_FAULT_VALID, "the latch was cleared");

        Fence last = gpu.submit(entity, GpuJob.of(new GpuCommand.Crc32c(vm.slot(), va, va + 0x10_0000, 16, 0)));
        await(last);
        assertEquals(Optional.empty(), last.error());
    }

    @Test
    void aFaultOnTheLastJobLeavesTheEngineUsable() {
        BoundGpu gpu = rig.gpu();
        SchedEntity entity = gpu.entity(ENGINE_CE0, SchedPriority.NORMAL);
        Fence bad = gpu.submit(entity, GpuJob.of(new GpuCommand.Fill(0, 2L << 30, 4096, 7)));
        await(bad);
        assertEquals(Optional.of(Errno.EFAULT), bad.error(), "a VRAM offset beyond VRAM is a GPU page fault");
        Fence ok = gpu.submit(entity, GpuJob.of(new GpuCommand.Fill(0, 0x5000, 4, 0x01020304)));
        await(ok);
        assertEquals(Optional.empty(), ok.error());
        assertEquals(0x01020304, vramU32(0x5000));
    }

    @Test
    void aBadDescriptorEndsWithEinval() {
        BoundGpu gpu = rig.gpu();
        SchedEntity entity = gpu.entity(ENGINE_CE0, SchedPriority.NORMAL);
        Fence bad = gpu.submit(entity, GpuJob.of(new GpuCommand.Fill(5, 0, 4096, 7))); // VM 5 has no root
        Fence ok = gpu.submit(entity, GpuJob.of(new GpuCommand.Fill(0, 0x6000, 4, 0x0A0B0C0D)));
        await(ok);
        assertEquals(Optional.of(Errno.EINVAL), bad.error());
        assertEquals(Optional.empty(), ok.error());
        assertEquals(0x0A0B0C0D, vramU32(0x6000));
    }
}
