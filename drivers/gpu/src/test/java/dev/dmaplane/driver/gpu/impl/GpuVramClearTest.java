package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.accel.AccelDevice;
import dev.dmaplane.accel.Command;
import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.Submission;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.ResvUsage;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/**
 * New VRAM objects cleared by the driver's hardware clear, as TTM and amdgpu clear new VRAM ({@code amdgpu_bo_create}
 * with {@code AMDGPU_GEM_CREATE_VRAM_CLEARED} runs {@code amdgpu_fill_buffer} with 0, amdgpu_object.c): objects
 * filling the whole VRAM commit no host memory, and an object on the range of a freed dirty one reads zeros.
 */
class GpuVramClearTest {
    private static final long MIB = 1L << 20;
    private static final long GIB = 1L << 30;
    private static final Set<Placement> VRAM_ONLY = EnumSet.of(Placement.VRAM, Placement.VISIBLE_VRAM);
    private static final int PATTERN = 0x5EC2E75A;

    private static void awaitIdle(AccelContext ctx, int handle) {
        assertTrue(ctx.reservation(handle).await(ResvUsage.BOOKKEEP, DriverRig.WAIT), "object " + handle + " stays busy");
    }

    private static byte[] read(AccelContext ctx, int handle, long offset, int n) {
        byte[] b = new byte[n];
        ctx.read(handle, offset, MemorySegment.ofArray(b));
        return b;
    }

    /**
     * Issue 12's demo on the default machine's 16 GiB of VRAM: a context fills all of it, evicting another context's
     * dirty object to host memory; the clears commit nothing and the evicted range reads zeros in its new owner.
     */
    @Test
    void objectsFillingAll16GibOfVramCommitNothingAndEvictAnotherContexts() {
        try (DriverRig rig = new DriverRig(DriverRig.MACHINE_16G, GpuOptions.DEFAULT.withRingEntries(64))) {
            AccelCore core = AccelCore.of(rig.machine);
            AccelDevice dev = core.device(rig.gpu().accelName()).orElseThrow();
            assertEquals(16 * GIB, dev.vram().totalSize());
            assertEquals(8 * MIB, dev.vram().reservedSize(), "the page tables' range is reserved");
            long total = dev.vram().totalSize() - dev.vram().reservedSize();
            try (AccelContext victim = core.open(dev.name()); AccelContext hog = core.open(dev.name())) {
                int dirty = victim.createBo(64 * MIB);
                byte[] secret = DriverRig.random(4096, 12);
                victim.write(dirty, 0, MemorySegment.ofArray(secret));
                victim.write(dirty, 64 * MIB - 4096, MemorySegment.ofArray(secret));
                long committed = rig.window().committedBytes();

                List<Long> sizes = new ArrayList<>();
                for (int i = 0; i < 15; i++) {
                    sizes.add(GIB);
                }
                sizes.add(GIB - 72 * MIB);  // the VRAM after the victim's object, exactly
                sizes.add(64 * MIB);        // no room left: the victim's object goes to host memory
                assertEquals(total, sizes.stream().mapToLong(Long::longValue).sum());
                List<Integer> handles = new ArrayList<>();
                for (long size : sizes) {
                    handles.add(hog.createBo(size, Placement.VRAM, VRAM_ONLY));
                }
                handles.forEach(h -> awaitIdle(hog, h));
                assertEquals(committed, rig.window().committedBytes(), "16 GiB of objects cleared, nothing committed");

                assertEquals(Placement.HOST, victim.info(dirty).placement(), "evicted");
                assertArrayEquals(secret, read(victim, dirty, 64 * MIB - 4096, 4096), "moved with its bytes");
                int last = handles.getLast();
                assertArrayEquals(new byte[4096], read(hog, last, 0, 4096), "the victim's range reads zeros");
                assertArrayEquals(new byte[4096], read(hog, last, 64 * MIB - 4096, 4096));
                assertArrayEquals(new byte[4096], rig.readVram(64 * MIB - 4096, 4096), "zeroed in VRAM itself");
            }
        }
    }

    /** A freed object's bytes do not leak into the next object on its range, in the window or beyond it. */
    @Test
    void anObjectOnAFreedDirtyRangeReadsZeros() {
        try (DriverRig rig = new DriverRig()) {
            AccelCore core = AccelCore.of(rig.machine);
            AccelDevice dev = core.device(rig.gpu().accelName()).orElseThrow();
            long visible = dev.vram().visibleSize() - dev.vram().reservedSize(); // the page tables sit in the window
            long beyond = dev.vram().totalSize() - dev.vram().visibleSize();
            byte[] secret = DriverRig.random(4096, 21);
            try (AccelContext ctx = core.open(dev.name())) {
                // all of the window: the next such object can only be on the same range
                int a = ctx.createBo(visible, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));
                for (long at : new long[]{0, visible / 2, visible - 4096}) {
                    ctx.write(a, at, MemorySegment.ofArray(secret));
                }
                // all of VRAM beyond the window, dirtied by the GPU through the context's VM
                int c = ctx.createBo(beyond, Placement.VRAM, EnumSet.of(Placement.VRAM));
                long va = 0x10_0000_0000L;
                ctx.vmBind(c, 0, va, beyond, true);
                Fence dirtied = ctx.submit(Submission.on(0, new Command.Fill(va, 4096, PATTERN),
                        new Command.Fill(va + beyond - 4096, 4096, PATTERN)).writing(c));
                DriverRig.await(dirtied);
                assertTrue(dirtied.error().isEmpty(), "the user's fill: " + dirtied.error());
                ctx.vmUnbind(va, beyond);
                long committed = rig.window().committedBytes();
                long hidden = rig.device.hiddenVramCommitted();
                assertEquals(2 * 2 * MIB, hidden, "the user's fill committed the two chunks it wrote");
                ctx.closeBo(a);
                ctx.closeBo(c);

                int b = ctx.createBo(visible, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));
                int d = ctx.createBo(beyond, Placement.VRAM, EnumSet.of(Placement.VRAM));
                for (long at : new long[]{0, visible / 2, visible - 4096}) {
                    assertArrayEquals(new byte[4096], read(ctx, b, at, 4096), "window offset " + at);
                }
                int out = ctx.createBo(8192, Placement.HOST, EnumSet.of(Placement.HOST));
                ctx.vmBind(d, 0, va, beyond, false);
                ctx.vmBind(out, 0, va + beyond, 8192, true);
                Fence copied = ctx.submit(Submission.on(0, new Command.Copy(va, va + beyond, 4096),
                        new Command.Copy(va + beyond - 4096, va + beyond + 4096, 4096)).reading(d).writing(out));
                DriverRig.await(copied);
                assertTrue(copied.error().isEmpty(), "the copy back: " + copied.error());
                assertArrayEquals(new byte[8192], read(ctx, out, 0, 8192), "VRAM beyond the window reads zeros");
                assertEquals(committed, rig.window().committedBytes(), "cleared in place, nothing more committed");
                assertEquals(hidden, rig.device.hiddenVramCommitted());
            }
        }
    }
}
