package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.dma.DmaDirection;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;
import java.util.zip.CRC32C;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The compute engine's kernels in a user VM whose page tables the test builds (host pages through the SYSTEM
 * aperture and the IOMMU, VRAM pages beyond the BAR window, a 2 MiB leaf), each bit-exact against a plain Java
 * reference on seeded random data: SAXPY as BLAS defines it (not fused), the f32 sum in the block order
 * {@code GpuRegs#KERNEL_SUM} documents, CRC32C of RFC 3720 ({@link CRC32C}) with a seed continuing a CRC.
 */
class GpuKernelTest {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int VM = 1;
    private static final long X_VA = 0x10_0000_0000L;
    private static final long Y_VA = 0x20_0000_0000L;
    private static final long OUT_VA = 0x30_0000_0000L;
    private static final long HUGE_VA = 0xFF_C000_0000L + (4L << 20); // near the top of the 40-bit VA space
    private static final long Y_VRAM = 600L << 20;

    private GpuRig rig;
    private PageTables pt;

    @BeforeEach
    void boot() {
        rig = new GpuRig();
        pt = new PageTables(rig.window, 16L << 20);
        rig.regs.write(regVmRoot(VM), 8, pt.root);
    }

    @AfterEach
    void close() {
        rig.close();
    }

    private static int pages(long bytes) {
        return (int) ((bytes + PAGE_SIZE - 1) & -PAGE_SIZE);
    }

    private static float[] floats(int n, long seed) {
        Random r = new Random(seed);
        float[] f = new float[n];
        for (int i = 0; i < n; i++) {
            f[i] = r.nextFloat() * 2 - 1;
        }
        return f;
    }

    private static byte[] bytesOf(float[] f) {
        MemorySegment s = MemorySegment.ofArray(new byte[4 * f.length]);
        for (int i = 0; i < f.length; i++) {
            s.setAtIndex(F32, i, f[i]);
        }
        return s.toArray(ValueLayout.JAVA_BYTE);
    }

    /** A host buffer holding {@code data}, mapped into the VM at {@code va}. */
    private GpuRig.HostBuffer hostAt(long va, byte[] data, boolean writable) {
        GpuRig.HostBuffer b = rig.host(pages(data.length), DmaDirection.BIDIRECTIONAL);
        b.put(data);
        pt.map(va, b.gpuAddr(), pages(data.length), writable);
        return b;
    }

    @Test
    void saxpyOnHostXAndHiddenVramYMatchesJava() {
        int n = 100_000; // six full 64 KiB chunks and a partial one
        float a = 1.7f;
        float[] x = floats(n, 11);
        float[] y = floats(n, 12);
        hostAt(X_VA, bytesOf(x), false);
        GpuRig.HostBuffer staging = rig.host(pages(4L * n), DmaDirection.BIDIRECTIONAL);
        staging.put(bytesOf(y));
        assertEquals(ST_OK, rig.run(0, OP_COPY, FLAG_PHYSICAL, 0, staging.gpuAddr(), Y_VRAM, 4L * n),
                "y into VRAM beyond the window");
        pt.map(Y_VA, Y_VRAM, pages(4L * n), true);

        assertEquals(ST_OK, rig.run(ENGINE_COMPUTE, OP_KERNEL, 0, VM, KERNEL_SAXPY, X_VA, Y_VA, n,
                Float.floatToRawIntBits(a)));

        assertEquals(ST_OK, rig.run(0, OP_COPY, FLAG_PHYSICAL, 0, Y_VRAM, staging.gpuAddr(), 4L * n));
        for (int i = 0; i < n; i++) {
            y[i] = a * x[i] + y[i];
        }
        assertArrayEquals(bytesOf(y), MemorySegment.ofArray(staging.bytes()).asSlice(0, 4L * n)
                .toArray(ValueLayout.JAVA_BYTE));
    }

    @Test
    void sumReducesInTheDocumentedOrder() {
        int n = 100_003;
        float[] x = floats(n, 21);
        hostAt(X_VA, bytesOf(x), false);
        GpuRig.HostBuffer out = hostAt(OUT_VA, new byte[4], true);
        assertEquals(ST_OK, rig.run(ENGINE_COMPUTE, OP_KERNEL, 0, VM, KERNEL_SUM, X_VA, OUT_VA + 8, n));
        float total = 0.0f;
        for (int b = 0; b < n; b += SUM_BLOCK) {
            float partial = 0.0f;
            for (int i = b; i < Math.min(n, b + SUM_BLOCK); i++) {
                partial += x[i];
            }
            total += partial;
        }
        assertEquals(Float.floatToRawIntBits(total), Float.floatToRawIntBits(out.cpu().get(F32, 8)));
    }

    @Test
    void crc32cOfVramThroughA2MiBPageContinuesFromItsSeed() {
        byte[] data = GpuRig.random(1_500_000, 31);
        GpuRig.HostBuffer staging = rig.host(pages(data.length), DmaDirection.TO_DEVICE);
        staging.put(data);
        long vram = 32L << 20;
        assertEquals(ST_OK, rig.run(1, OP_COPY, FLAG_PHYSICAL, 0, staging.gpuAddr(), vram, data.length));
        pt.mapHuge(HUGE_VA, vram, false);
        GpuRig.HostBuffer out = hostAt(OUT_VA, new byte[16], true);

        assertEquals(ST_OK, rig.run(ENGINE_COMPUTE, OP_KERNEL, 0, VM, KERNEL_CRC32C, HUGE_VA, OUT_VA, data.length, 0));
        CRC32C whole = new CRC32C();
        whole.update(data);
        assertEquals((int) whole.getValue(), out.cpu().get(GpuRig.U32, 0));

        CRC32C head = new CRC32C();
        head.update(data, 0, 1000);
        assertEquals(ST_OK, rig.run(ENGINE_COMPUTE, OP_KERNEL, 0, VM, KERNEL_CRC32C, HUGE_VA + 1000, OUT_VA + 4,
                data.length - 1000, head.getValue()));
        assertEquals((int) whole.getValue(), out.cpu().get(GpuRig.U32, 4), "seeded with crc32c(A): crc32c(A || B)");
    }

    @Test
    void kernelsRefuseUnknownIdsAndEmptyCounts() {
        assertEquals(ST_BAD_DESC, rig.run(ENGINE_COMPUTE, OP_KERNEL, 0, VM, 77, X_VA, Y_VA, 1));
        rig.resetEngine(ENGINE_COMPUTE);
        assertEquals(ST_BAD_DESC, rig.run(ENGINE_COMPUTE, OP_KERNEL, 0, VM, KERNEL_SUM, X_VA, Y_VA, 0));
        rig.resetEngine(ENGINE_COMPUTE);
        assertEquals(ST_BAD_DESC, rig.run(ENGINE_COMPUTE, OP_COPY, 0, VM, X_VA, Y_VA, 64), "no copies on compute");
    }
}
