package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.Command;
import dev.dmaplane.accel.Submission;
import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.accel.AccelDevice;
import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.EngineInfo;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.accel.spi.VramInfo;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.EnumSet;
import java.util.List;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The GPU under the accelerator core through its provider SPI ({@code accel.spi} package docs; amdgpu's
 * {@code amdgpu_ttm.c} moves through the copy engine, {@code amdgpu_vram_mgr.c} keeping the driver's own VRAM out
 * of the manager): registered at probe, all VRAM reported with the page tables' range reserved, objects moved between host
 * memory, VRAM beyond the window and the window by the copy engine with their bytes intact, and unregistered at
 * unbind.
 */
class GpuAccelProviderTest {
    private static final long MIB = 1 << 20;

    private final DriverRig rig = new DriverRig();

    @AfterEach
    void close() {
        rig.close();
    }

    /**
     * amdgpu_vram_mgr.c {@code amdgpu_vram_mgr_reserve_range}: the core sees all the GPU's VRAM and window, the page
     * tables' range reserved rather than cut out, so the core's offsets are the GPU's.
     */
    @Test
    void theCoreSeesAllVramWithThePageTablesReservedAndTheEngines() {
        AccelDevice dev = AccelCore.of(rig.machine).device(rig.gpu().accelName()).orElseThrow();
        assertEquals(GpuDriver.NAME, dev.driverName());
        assertEquals(256 * MIB, dev.vram().visibleSize(), "the whole 256 MiB window");
        assertEquals(1024 * MIB, dev.vram().totalSize());
        assertEquals(List.of(new VramInfo.Range(248 * MIB, 8 * MIB)), dev.vram().reserved(),
                "the page tables at the top of the window");
        assertEquals(1016 * MIB, dev.vramAvailable(), "everything but the page tables is the core's");
        assertEquals(List.of("ce0", "ce1", "compute"), dev.engines().stream().map(EngineInfo::name).toList());
        assertEquals(EngineInfo.EngineClass.COMPUTE, dev.engines().get(2).engineClass());
    }

    @Test
    void objectsAreClearedAndMovedByTheCopyEngineAroundThePageTables() {
        BoundGpu gpu = rig.gpu();
        AccelCore core = AccelCore.of(rig.machine);
        DriverRig.await(gpu.submit(gpu.entity(0, SchedPriority.NORMAL),
                GpuJob.of(new GpuCommand.Fill(0, 256 * MIB, 4096, 0xFFFFFFFF)))); // old bytes past the window
        DriverRig.HostBuffer probe = rig.host(4096);
        probe.put(DriverRig.random(4096, 1));
        try (AccelContext ctx = core.open(gpu.accelName())) {
            int h = ctx.createBo(MIB, Placement.VRAM, EnumSet.of(Placement.VRAM, Placement.VISIBLE_VRAM));
            assertEquals(Placement.VRAM, ctx.info(h).placement(), "beyond the window first");
            // queued behind the core's clear on the same kernel entity: what the clear left at GPU offset 256 MiB
            DriverRig.await(gpu.move(List.of(new GpuRun(Aperture.VRAM, 256 * MIB, 4096)), List.of(probe.run())));
            assertArrayEquals(new byte[4096], probe.bytes(), "the first object beyond the window, cleared");

            byte[] data = DriverRig.random((int) MIB, 17);
            ctx.write(h, 0, MemorySegment.ofArray(data));
            assertEquals(Placement.VISIBLE_VRAM, ctx.info(h).placement(), "moved by ce0 into the window");
            byte[] back = new byte[data.length];
            ctx.read(h, 0, MemorySegment.ofArray(back));
            assertArrayEquals(data, back);

            int fresh = ctx.createBo(MIB, Placement.VRAM, EnumSet.of(Placement.VRAM, Placement.VISIBLE_VRAM));
            MemorySegment bytes = MemorySegment.ofArray(new byte[(int) MIB]);
            ctx.read(fresh, 0, bytes);
            assertArrayEquals(new byte[(int) MIB], bytes.toArray(ValueLayout.JAVA_BYTE), "cleared, then moved");
        }
        GpuAddressSpace vm = gpu.createVm();
        vm.map(0x1000_0000L, List.of(new GpuRun(Aperture.VRAM, 0x10_0000, 4096)), true);
        Fence f = gpu.submit(gpu.entity(2, SchedPriority.NORMAL),
                GpuJob.of(new GpuCommand.Crc32c(vm.slot(), 0x1000_0000L, 0x1000_0000L, 16, 0)));
        DriverRig.await(f);
        assertTrue(f.error().isEmpty(), "the page tables survived the core's VRAM traffic: " + f.error());
    }

    @Test
    void unbindUnregistersTheAccelDevice() {
        String name = rig.gpu().accelName();
        AccelContext ctx = AccelCore.of(rig.machine).open(name);
        ctx.createBo(MIB);
        rig.machine.devices().unregisterDriver(rig.driver);
        assertTrue(AccelCore.of(rig.machine).device(name).isEmpty());
        assertEquals(Errno.EIO, assertThrows(ErrnoException.class, () -> ctx.createBo(MIB)).errno());
        assertEquals(List.of(), DriverRig.gpuThreads());
    }

    /**
     * A user's jobs through the core on the real engines ({@code amdgpu_cs}: the context's VM, its objects' implicit
     * fences): a copy on ce0 then CRC32C on the compute engine over what arrived, each ordered after the other by the
     * object's reservation, the result bit-exact against {@code java.util.zip.CRC32C}.
     */
    @Test
    void userJobsRunOnTheEnginesInTheContextsVm() {
        AccelCore core = AccelCore.of(rig.machine);
        try (AccelContext ctx = core.open(rig.gpu().accelName())) {
            int src = ctx.createBo(MIB);
            int dst = ctx.createBo(MIB);
            int out = ctx.createBo(4096);
            long vaSrc = 0x10_0000_0000L;
            long vaDst = vaSrc + 2 * MIB;
            long vaOut = vaSrc + 4 * MIB;
            ctx.vmBind(src, 0, vaSrc, MIB, false);
            ctx.vmBind(dst, 0, vaDst, MIB, true);
            ctx.vmBind(out, 0, vaOut, 4096, true);
            byte[] data = DriverRig.random((int) MIB, 23);
            ctx.write(src, 0, MemorySegment.ofArray(data));

            Fence copied = ctx.submit(Submission.on(0, new Command.Copy(vaSrc, vaDst, MIB)).reading(src).writing(dst));
            Fence summed = ctx.submit(Submission.on(2, Command.Launch.of("crc32c", vaDst, vaOut, MIB, 0))
                    .reading(dst).writing(out));
            DriverRig.await(summed);
            assertTrue(copied.isSignaled() && copied.error().isEmpty(), "the kernel ran after the copy it reads");

            byte[] crc = new byte[4];
            ctx.read(out, 0, MemorySegment.ofArray(crc));
            CRC32C ref = new CRC32C();
            ref.update(data);
            assertEquals((int) ref.getValue(), MemorySegment.ofArray(crc).get(ValueLayout.JAVA_INT_UNALIGNED, 0));
        }
    }

    /** The driver's part of the submission checks ({@code amdgpu_cs_parser_init}): EINVAL before anything is queued. */
    @Test
    void commandsAnEngineCannotRunAreEinvalAtSubmission() {
        AccelCore core = AccelCore.of(rig.machine);
        try (AccelContext ctx = core.open(rig.gpu().accelName())) {
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                    () -> ctx.submit(Submission.on(0, Command.Launch.of("saxpy", 0, 0, 0, 0)))).errno(), "a kernel on ce0");
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                    () -> ctx.submit(Submission.on(2, new Command.Fill(0, 4096, 0)))).errno(), "a fill on compute");
            ErrnoException unknown = assertThrows(ErrnoException.class,
                    () -> ctx.submit(Submission.on(2, Command.Launch.of("fft", 1))));
            assertTrue(unknown.getMessage().contains("unknown kernel 'fft'"), unknown.getMessage());
            ErrnoException count = assertThrows(ErrnoException.class,
                    () -> ctx.submit(Submission.on(2, Command.Launch.of("sum", 1, 2))));
            assertTrue(count.getMessage().contains("takes 3 arguments"), count.getMessage());
        }
    }
}
