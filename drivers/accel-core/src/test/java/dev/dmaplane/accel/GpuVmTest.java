package dev.dmaplane.accel;

import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvUsage;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.EnumSet;
import java.util.List;
import java.util.TreeMap;

import static dev.dmaplane.accel.AccelRig.MIB;
import static dev.dmaplane.accel.BufferObjectTest.errno;
import static dev.dmaplane.accel.BufferObjectTest.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * GPU virtual memory per context ({@code drivers/gpu/drm/drm_gpuvm.c}: {@code drm_gpuva_insert} refusing an
 * overlap with {@code EEXIST}, the evict list and {@code drm_gpuvm_validate}; the xe VM_BIND uAPI for map and
 * unmap), checked through the test provider's page tables with real bytes.
 */
class GpuVmTest {
    private static final long VA = 0x10_0000_0000L;

    private final AccelRig rig = new AccelRig();

    @AfterEach
    void tearDown() throws InterruptedException {
        rig.close();
    }

    private TreeMap<Long, Long> pageTable(AccelContext ctx) {
        return rig.gpu.pageTables.get(rig.device.name() + " ctx " + ctx.id());
    }

    /** What the copy engine reads at {@code va} through the page table: host pages through the IOMMU. */
    private byte[] gpuRead(AccelContext ctx, long va, int size) {
        byte[] out = new byte[size];
        for (int at = 0; at < size; at += (int) TestGpu.PAGE) {
            long pte = pageTable(ctx).get(va + at);
            MemorySegment dst = MemorySegment.ofArray(out).asSlice(at, Math.min(TestGpu.PAGE, size - at));
            rig.gpu.transfer(List.of(new GpuRun(Aperture.of(pte), pte & ~Aperture.SYSTEM_BIT, dst.byteSize())), dst, false);
        }
        return out;
    }

    @Test
    void bindMapsThePagesAndUnbindClearsThem() {
        try (AccelContext ctx = rig.device.open()) {
            int h = ctx.createBo(64 * 1024, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM, Placement.HOST));
            byte[] data = pattern(64 * 1024, 5);
            ctx.write(h, 0, MemorySegment.ofArray(data));
            ctx.vmBind(h, 16 * 1024, VA, 32 * 1024, true);
            assertEquals(8, pageTable(ctx).size());
            assertEquals(Aperture.VRAM, Aperture.of(pageTable(ctx).get(VA)));
            byte[] want = new byte[32 * 1024];
            System.arraycopy(data, 16 * 1024, want, 0, want.length);
            assertArrayEquals(want, gpuRead(ctx, VA, want.length));
            assertEquals(1, ctx.info(h).vmMappings());
            ctx.vmUnbind(VA, 32 * 1024);
            assertTrue(pageTable(ctx).isEmpty());
        }
    }

    @Test
    void badBindsAreRefused() {
        try (AccelContext ctx = rig.device.open()) {
            int h = ctx.createBo(64 * 1024);
            ctx.vmBind(h, 0, VA, 64 * 1024, false);
            assertEquals(Errno.EINVAL, errno(() -> ctx.vmBind(h, 0, VA + 1, 4096, false)), "unaligned VA");
            assertEquals(Errno.EINVAL, errno(() -> ctx.vmBind(h, 100, VA * 2, 4096, false)), "unaligned offset");
            assertEquals(Errno.EINVAL, errno(() -> ctx.vmBind(h, 0, VA * 2, 128 * 1024, false)), "beyond the object");
            assertEquals(Errno.EINVAL, errno(() -> ctx.vmBind(h, 0, VA * 2, 0, false)), "empty");
            assertEquals(Errno.EINVAL, errno(() -> ctx.vmBind(h, 0, (1L << 48) - 4096, 8192, false)), "beyond the VM");
            assertEquals(Errno.EEXIST, errno(() -> ctx.vmBind(h, 0, VA + 60 * 1024, 8192, false)), "overlap");
            assertEquals(Errno.EEXIST, errno(() -> ctx.vmBind(h, 0, VA - 4096, 8192, false)), "overlap from below");
            assertEquals(Errno.ENOENT, errno(() -> ctx.vmBind(7, 0, VA * 2, 4096, false)));
            assertEquals(Errno.ENOENT, errno(() -> ctx.vmUnbind(VA, 4096)), "not a whole mapping");
            assertEquals(16, pageTable(ctx).size(), "nothing changed");
        }
    }

    @Test
    void aMovedObjectIsRemappedByValidateAndKeptAliveByItsMapping() {
        try (AccelContext a = rig.device.open(); AccelContext b = rig.device.open()) {
            int h = a.createBo(MIB);
            byte[] data = pattern((int) MIB, 11);
            a.write(h, 0, MemorySegment.ofArray(data));
            a.vmBind(h, 0, VA, MIB, true);
            long before = pageTable(a).get(VA);
            for (int i = 0; i < 6; i++) {
                b.pin(b.createBo(MIB, Placement.VRAM, EnumSet.of(Placement.VRAM)));
            }
            assertEquals(Placement.HOST, a.info(h).placement());
            assertEquals(before, pageTable(a).get(VA), "page tables are rewritten on validate, not at the move");
            a.vmValidate();
            assertEquals(Aperture.SYSTEM, Aperture.of(pageTable(a).get(VA)), "VRAM is pinned full: stays in host memory");
            assertArrayEquals(data, gpuRead(a, VA, (int) MIB));

            b.close();
            a.vmValidate();
            Reservation resv = a.reservation(h);
            assertTrue(resv.await(ResvUsage.KERNEL, Duration.ofSeconds(10)), "the move back to VRAM");
            a.closeBo(h);
            assertEquals(AccelRig.VRAM - MIB, rig.vramAvailableWhenIdle(), "the mapping keeps the closed object");
            assertNotEquals(Aperture.SYSTEM, Aperture.of(pageTable(a).get(VA)));
            assertArrayEquals(data, gpuRead(a, VA, (int) MIB));
            long frames = rig.machine.memory().allocatedFrames();
            a.vmUnbind(VA, MIB);
            assertEquals(AccelRig.VRAM, rig.vramAvailableWhenIdle(), "the last reference went with the mapping");
            assertEquals(frames, rig.machine.memory().allocatedFrames());
        }
    }

    /**
     * {@code drm_gpuvm_validate} rebinds only what is on the VM's evict list: validating (or submitting with) an
     * object that never moved leaves its page tables alone; after a move the next validate rewrites them.
     */
    @Test
    void validateRewritesOnlyTheMappingsOfAnObjectThatMoved() {
        try (AccelContext a = rig.device.open(); AccelContext b = rig.device.open()) {
            int h = a.createBo(MIB);
            a.vmBind(h, 0, VA, MIB, true);
            long pte = pageTable(a).get(VA);
            long marker = pte ^ 0x5A000;
            pageTable(a).put(VA, marker); // what a rewrite would overwrite
            a.validate(h);
            assertEquals(marker, pageTable(a).get(VA), "an object that stayed is not rebound");
            for (int i = 0; i < 6; i++) {
                b.pin(b.createBo(MIB, Placement.VRAM, EnumSet.of(Placement.VRAM)));
            }
            assertEquals(Placement.HOST, a.info(h).placement());
            a.validate(h);
            assertEquals(Aperture.SYSTEM, Aperture.of(pageTable(a).get(VA)), "the moved object is rebound");
        }
    }
}
