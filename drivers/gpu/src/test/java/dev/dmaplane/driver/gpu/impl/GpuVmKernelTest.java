package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.accel.sched.SchedEntity;
import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.zip.CRC32C;

import static dev.dmaplane.driver.gpu.impl.DriverRig.await;
import static dev.dmaplane.driver.gpu.model.GpuRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The compute kernels through user VMs whose page tables the driver wrote ({@code amdgpu_vm.c}
 * {@code amdgpu_vm_update_range}, {@code drm_gpuvm.c} map/unmap), host pages and VRAM mapped side by side, each
 * result bit-exact against a Java reference; VM slots and the page-table pool given back on destroy
 * ({@code amdgpu_vm_fini}); the kernel mover's moves and clears ({@code amdgpu_ttm_copy_mem_to_mem},
 * {@code amdgpu_fill_buffer}).
 */
class GpuVmKernelTest {
    private static final long X = 0x1_0000_0000L;
    private static final long Y = 0x2_0000_0000L;

    private final DriverRig rig = new DriverRig();

    @AfterEach
    void close() {
        rig.close();
    }

    private static byte[] floats(float[] f) {
        ByteBuffer b = ByteBuffer.allocate(4 * f.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : f) {
            b.putFloat(v);
        }
        return b.array();
    }

    private static float[] floats(byte[] b) {
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        float[] f = new float[b.length / 4];
        for (int i = 0; i < f.length; i++) {
            f[i] = bb.getFloat();
        }
        return f;
    }

    private static float[] randomFloats(int n, long seed) {
        Random r = new Random(seed);
        float[] f = new float[n];
        for (int i = 0; i < n; i++) {
            f[i] = (r.nextFloat() - 0.5f) * 1000f;
        }
        return f;
    }

    private Fence run(SchedEntity entity, GpuCommand c) {
        Fence f = rig.gpu().submit(entity, GpuJob.of(c));
        await(f);
        assertEquals(Optional.empty(), f.error(), c.toString());
        return f;
    }

    @Test
    void saxpyReadsHostPagesAndUpdatesVramThroughTheVm() {
        BoundGpu gpu = rig.gpu();
        int n = 50_000; // 200 KB: several 64 KiB chunks and level-0 tables
        float[] x = randomFloats(n, 1);
        float[] y = randomFloats(n, 2);
        float a = 1.75f;
        DriverRig.HostBuffer xs = rig.host(4 * n);
        xs.put(floats(x));
        long yVram = 0x40_0000;
        rig.writeVram(yVram, floats(y));
        long ySize = (4L * n + PAGE_SIZE - 1) & -PAGE_SIZE;
        GpuAddressSpace vm = gpu.createVm();
        vm.map(X, List.of(new GpuRun(Aperture.SYSTEM, xs.bus(), (4L * n + PAGE_SIZE - 1) & -PAGE_SIZE)), false);
        vm.map(Y, List.of(new GpuRun(Aperture.VRAM, yVram, ySize)), true);
        run(gpu.entity(ENGINE_COMPUTE, SchedPriority.NORMAL), new GpuCommand.Saxpy(vm.slot(), X, Y, n, a));
        float[] out = floats(rig.readVram(yVram, 4 * n));
        for (int i = 0; i < n; i++) {
            assertEquals(Float.floatToRawIntBits(a * x[i] + y[i]), Float.floatToRawIntBits(out[i]), "y[" + i + "]");
        }
    }

    @Test
    void sumAndCrc32cOverRunsScatteredInVramAndHostMemory() {
        BoundGpu gpu = rig.gpu();
        int n = 3 * 4096;
        float[] x = randomFloats(n, 7);
        byte[] bytes = floats(x);
        // the first two pages in host memory, the rest in VRAM: one VA range, two apertures
        DriverRig.HostBuffer host = rig.host(2 * 4096);
        host.put(Arrays.copyOfRange(bytes, 0, 2 * 4096));
        rig.writeVram(0x80_0000, Arrays.copyOfRange(bytes, 2 * 4096, bytes.length));
        GpuAddressSpace vm = gpu.createVm();
        vm.map(X, List.of(host.run(), new GpuRun(Aperture.VRAM, 0x80_0000, bytes.length - 2 * 4096)), false);
        vm.map(Y, List.of(new GpuRun(Aperture.VRAM, 0x90_0000, PAGE_SIZE)), true);
        SchedEntity compute = gpu.entity(ENGINE_COMPUTE, SchedPriority.NORMAL);
        run(compute, new GpuCommand.Sum(vm.slot(), X, Y, n));
        float total = 0f;
        for (int b = 0; b < n; b += SUM_BLOCK) {
            float partial = 0f;
            for (int i = b; i < Math.min(n, b + SUM_BLOCK); i++) {
                partial += x[i];
            }
            total += partial;
        }
        float got = ByteBuffer.wrap(rig.readVram(0x90_0000, 4)).order(ByteOrder.LITTLE_ENDIAN).getFloat();
        assertEquals(Float.floatToRawIntBits(total), Float.floatToRawIntBits(got), total + " vs " + got);

        CRC32C first = new CRC32C();
        first.update(bytes, 0, 5000);
        run(compute, new GpuCommand.Crc32c(vm.slot(), X + 5000, Y + 8, bytes.length - 5000, (int) first.getValue()));
        CRC32C all = new CRC32C();
        all.update(bytes);
        int crc = ByteBuffer.wrap(rig.readVram(0x90_0008, 4)).order(ByteOrder.LITTLE_ENDIAN).getInt();
        assertEquals((int) all.getValue(), crc, "continued from the seed of the first 5000 bytes");
    }

    @Test
    void unmapFaultsRemapReplacesAndDestroyGivesSlotAndTablesBack() {
        BoundGpu gpu = rig.gpu();
        int tables = gpu.pageTablePages();
        GpuAddressSpace vm = gpu.createVm();
        vm.map(Y, List.of(new GpuRun(Aperture.VRAM, 0xA0_0000, 4 * PAGE_SIZE)), true);
        ErrnoException odd = assertThrows(ErrnoException.class,
                () -> vm.map(Y + 100, List.of(new GpuRun(Aperture.VRAM, 0, PAGE_SIZE)), true));
        assertEquals(Errno.EINVAL, odd.errno());
        assertTrue(odd.getMessage().contains(Long.toHexString(Y + 100)), odd.getMessage());
        SchedEntity copy = gpu.entity(ENGINE_CE0, SchedPriority.NORMAL);
        run(copy, new GpuCommand.Fill(vm.slot(), Y, 4 * PAGE_SIZE, 0x11111111));
        vm.unmap(Y + PAGE_SIZE, PAGE_SIZE);
        assertEquals(3 * PAGE_SIZE, vm.mappedBytes());
        Fence f = gpu.submit(copy, GpuJob.of(new GpuCommand.Fill(vm.slot(), Y + PAGE_SIZE, 4, 0x22222222)));
        await(f);
        assertEquals(Optional.of(Errno.EFAULT), f.error(), "the TLB was invalidated after the unmap");
        run(copy, new GpuCommand.Fill(vm.slot(), Y + 2 * PAGE_SIZE, 4, 0x33333333));
        assertArrayEquals(new byte[] {0x33, 0x33, 0x33, 0x33}, rig.readVram(0xA0_0000 + 2 * PAGE_SIZE, 4));
        vm.map(Y + 3 * PAGE_SIZE, List.of(new GpuRun(Aperture.VRAM, 0xB0_0000, PAGE_SIZE)), true); // a moved page
        assertEquals(3 * PAGE_SIZE, vm.mappedBytes(), "the remap replaced the entry");
        run(copy, new GpuCommand.Fill(vm.slot(), Y + 3 * PAGE_SIZE, 4, 0x44444444));
        assertArrayEquals(new byte[] {0x44, 0x44, 0x44, 0x44}, rig.readVram(0xB0_0000, 4));
        assertArrayEquals(new byte[] {0x11, 0x11, 0x11, 0x11}, rig.readVram(0xA0_0000 + 3 * PAGE_SIZE, 4));

        List<GpuAddressSpace> all = new ArrayList<>(List.of(vm));
        for (int i = 2; i < VM_COUNT; i++) {
            all.add(gpu.createVm());
        }
        assertEquals(Errno.ENOSPC, assertThrows(ErrnoException.class, gpu::createVm).errno());
        all.forEach(GpuAddressSpace::destroy);
        assertEquals(tables, gpu.pageTablePages(), "every table back in the pool");
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> vm.unmap(Y, PAGE_SIZE)).errno());
        GpuAddressSpace again = gpu.createVm();
        assertEquals(1, again.slot(), "slot 1 is free again");
    }

    @Test
    void kernelMovesAndClearsRunOnPhysicalRuns() {
        BoundGpu gpu = rig.gpu();
        byte[] data = DriverRig.random(3 * 4096, 12);
        DriverRig.HostBuffer src = rig.host(data.length);
        src.put(data);
        // host -> two VRAM runs -> host, then clear the VRAM
        List<GpuRun> vram = List.of(new GpuRun(Aperture.VRAM, 0x100_0000, 4096), new GpuRun(Aperture.VRAM, 0x200_0000, 2 * 4096));
        Fence in = gpu.move(List.of(src.run()), vram);
        DriverRig.HostBuffer back = rig.host(data.length);
        Fence out = gpu.move(vram, List.of(back.run()));
        await(out);
        assertEquals(Optional.empty(), in.error());
        assertArrayEquals(data, back.bytes());
        await(gpu.clear(vram));
        assertArrayEquals(new byte[4096], rig.readVram(0x100_0000, 4096));
        assertArrayEquals(new byte[2 * 4096], rig.readVram(0x200_0000, 2 * 4096));
        ErrnoException sizes = assertThrows(ErrnoException.class,
                () -> gpu.move(List.of(src.run()), List.of(new GpuRun(Aperture.VRAM, 0, 4096))));
        assertEquals(Errno.EINVAL, sizes.errno());
    }
}
