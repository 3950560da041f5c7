package dev.dmaplane.accel;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.lang.foreign.MemorySegment;
import java.util.EnumSet;
import java.util.Map;

import static dev.dmaplane.accel.AccelRig.MIB;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * GEM objects through the public API ({@code drivers/gpu/drm/drm_gem.c}: handles, {@code drm_gem_object_lookup}
 * answering {@code ENOENT}, {@code drm_gem_handle_delete} (GEM_CLOSE) {@code EINVAL}; {@code ttm_bo_vm.c}: CPU access through the mmap path), with real bytes.
 */
class BufferObjectTest {
    private final AccelRig rig = new AccelRig();

    @AfterEach
    void tearDown() throws InterruptedException {
        rig.close();
    }

    static byte[] pattern(int size, int seed) {
        byte[] b = new byte[size];
        for (int i = 0; i < size; i++) {
            b[i] = (byte) (i * 31 + seed);
        }
        return b;
    }

    static byte[] read(AccelContext ctx, int handle, long offset, int size) {
        byte[] b = new byte[size];
        ctx.read(handle, offset, MemorySegment.ofArray(b));
        return b;
    }

    static Errno errno(Executable call) {
        return assertThrows(ErrnoException.class, call).errno();
    }

    @Test
    void createWriteReadAndInfo() {
        try (AccelContext ctx = rig.device.open()) {
            int h = ctx.createBo(100_000);
            assertEquals(1, h, "GEM handles start at 1");
            BoInfo info = ctx.info(h);
            assertEquals(102_400, info.size(), "rounded up to pages");
            byte[] data = pattern(5000, 7);
            ctx.write(h, 4000, MemorySegment.ofArray(data));
            assertArrayEquals(data, read(ctx, h, 4000, 5000));
            assertArrayEquals(new byte[4000], read(ctx, h, 0, 4000), "a new object reads as zeroes");
            Map<String, String> fd = ctx.fdinfo();
            assertEquals("testaccel", fd.get("drm-driver"));
            assertEquals("100 KiB", fd.get("drm-total-vram"));
            assertEquals("0 KiB", fd.get("drm-total-system"));
        }
    }

    @Test
    void badInputIsRefusedAndLeavesNothing() {
        try (AccelContext ctx = rig.device.open()) {
            long free = rig.vramAvailableWhenIdle();
            assertEquals(Errno.EINVAL, errno(() -> ctx.createBo(0)));
            assertEquals(Errno.EINVAL, errno(() -> ctx.createBo(Long.MAX_VALUE)));
            assertEquals(Errno.EINVAL, errno(() -> ctx.createBo(-4096)));
            assertEquals(Errno.EINVAL, errno(() -> ctx.createBo(4096, Placement.HOST, EnumSet.of(Placement.VRAM))));
            assertEquals(Errno.EINVAL, errno(() -> ctx.createBo(7 * MIB, Placement.VRAM, EnumSet.of(Placement.VRAM))));
            assertEquals(Errno.EINVAL, errno(() -> ctx.closeBo(1)), "GEM_CLOSE: drm_gem_handle_delete");
            assertEquals(Errno.ENOENT, errno(() -> ctx.info(42)));
            int h = ctx.createBo(8192);
            assertEquals(Errno.EFAULT, errno(() -> ctx.read(h, 4096, MemorySegment.ofArray(new byte[4097]))));
            assertEquals(Errno.EFAULT, errno(() -> ctx.write(h, -1, MemorySegment.ofArray(new byte[1]))));
            assertEquals(Errno.EINVAL, errno(() -> ctx.unpin(h)));
            ctx.closeBo(h);
            assertEquals(Errno.EINVAL, errno(() -> ctx.closeBo(h)), "closed twice");
            assertEquals(Errno.ENOENT, errno(() -> ctx.read(h, 0, MemorySegment.ofArray(new byte[1]))), "lookups: ENOENT");
            assertEquals(free, rig.vramAvailableWhenIdle());
        }
    }

    @Test
    void limitsAreEagainPerContext() {
        rig.device.setLimits(new AccelLimits(MIB, 2));
        try (AccelContext a = rig.device.open(); AccelContext b = rig.device.open()) {
            a.createBo(4096);
            assertEquals(Errno.EAGAIN, errno(() -> a.createBo(MIB)), "bytes");
            a.createBo(4096);
            assertEquals(Errno.EAGAIN, errno(() -> a.createBo(4096)), "handles");
            b.createBo(MIB);
            a.closeBo(1);
            a.createBo(4096);
        }
        assertEquals(AccelRig.VRAM, rig.vramAvailableWhenIdle());
    }

    @Test
    void closedContextAndUnknownDevice() {
        AccelContext ctx = rig.device.open();
        ctx.createBo(4096);
        ctx.close();
        assertEquals(Errno.EBADF, errno(() -> ctx.createBo(4096)));
        assertEquals(AccelRig.VRAM, rig.vramAvailableWhenIdle());
        assertEquals(Errno.ENODEV, errno(() -> rig.core.open("accel9")));
    }
}
