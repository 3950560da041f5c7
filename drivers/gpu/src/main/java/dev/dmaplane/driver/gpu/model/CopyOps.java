package dev.dmaplane.driver.gpu.model;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * The copy engines' operations (an SDMA engine's linear copy and constant fill, as amdgpu's
 * {@code amdgpu_copy_buffer} and {@code amdgpu_fill_buffer} program them). A copy reads and writes memory in place
 * ({@link GpuVm#copy}), the engine's buffer of {@link GpuRegs#CHUNK} only staging SYSTEM-to-SYSTEM copies; a fill
 * goes in chunks of it.
 * A fill with pattern 0 is the hardware clear (amdgpu's VRAM clear behind {@code AMDGPU_GEM_CREATE_VRAM_CLEARED}):
 * it leaves never-written VRAM uncommitted.
 */
final class CopyOps {
    /** The largest length a descriptor may give: the whole GPU VA space. */
    static final long MAX_LENGTH = 1L << VA_BITS;

    private static final ValueLayout.OfInt LE_U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final MemorySegment buf = MemorySegment.ofArray(new byte[CHUNK]);

    void copy(GpuVm vm, long src, long dst, long length) {
        checkLength(length);
        vm.copy(src, dst, length, buf);
    }

    void fill(GpuVm vm, long dst, long length, int pattern) {
        checkLength(length);
        for (int i = 0; i < CHUNK; i += 4) {
            buf.set(LE_U32, i, pattern);
        }
        for (long done = 0; done < length; done += CHUNK) {
            vm.checkAbort();
            MemorySegment part = buf.asSlice(0, Math.min(CHUNK, length - done));
            if (pattern == 0) {
                vm.clear(dst + done, part);
            } else {
                vm.write(dst + done, part);
            }
        }
    }

    private static void checkLength(long length) {
        if (length <= 0 || length > MAX_LENGTH) {
            throw JobFault.badDesc("length " + Long.toUnsignedString(length) + " outside 1.." + MAX_LENGTH);
        }
    }
}
