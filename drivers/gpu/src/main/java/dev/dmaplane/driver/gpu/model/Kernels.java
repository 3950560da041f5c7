package dev.dmaplane.driver.gpu.model;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.zip.CRC32C;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * The compute engine's kernels, on real bytes read and written through the job's {@link GpuVm} in chunks of
 * {@link GpuRegs#CHUNK} bytes (what a driver's compute queue would launch: BLAS SAXPY, a reduction, a checksum).
 */
final class Kernels {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** CRC32C's polynomial, bit-reflected (RFC 3720 appendix B.4). */
    private static final int POLY = 0x82F6_3B78;
    /** Elements per chunk; a chunk holds whole {@link GpuRegs#SUM_BLOCK} blocks. */
    private static final int CHUNK_FLOATS = CHUNK / 4;
    static final long MAX_ELEMENTS = 1L << (VA_BITS - 2);

    private final MemorySegment x = MemorySegment.ofArray(new byte[CHUNK]);
    private final MemorySegment y = MemorySegment.ofArray(new byte[CHUNK]);

    /** Runs kernel {@code id} with its arguments; an unknown id or a count of 0 is a bad descriptor. */
    void run(GpuVm vm, long id, long arg1, long arg2, long arg3, long arg4) {
        if (id == KERNEL_SPIN) {
            vm.spinUntilReset();
        }
        if (id != KERNEL_SAXPY && id != KERNEL_SUM && id != KERNEL_CRC32C) {
            throw JobFault.badDesc("unknown kernel " + id);
        }
        if (arg3 <= 0 || arg3 > MAX_ELEMENTS) {
            throw JobFault.badDesc("kernel " + id + ": count " + Long.toUnsignedString(arg3) + " outside 1.." + MAX_ELEMENTS);
        }
        switch ((int) id) {
            case KERNEL_SAXPY -> saxpy(vm, arg1, arg2, arg3, Float.intBitsToFloat((int) arg4));
            case KERNEL_SUM -> sum(vm, arg1, arg2, arg3);
            default -> crc32c(vm, arg1, arg2, arg3, (int) arg4);
        }
    }

    private void saxpy(GpuVm vm, long xAddr, long yAddr, long n, float a) {
        for (long i = 0; i < n; i += CHUNK_FLOATS) {
            vm.checkAbort();
            int m = (int) Math.min(CHUNK_FLOATS, n - i);
            MemorySegment xs = x.asSlice(0, 4L * m);
            MemorySegment ys = y.asSlice(0, 4L * m);
            vm.read(xAddr + 4 * i, xs);
            vm.read(yAddr + 4 * i, ys);
            for (int k = 0; k < m; k++) {
                ys.setAtIndex(F32, k, a * xs.getAtIndex(F32, k) + ys.getAtIndex(F32, k));
            }
            vm.write(yAddr + 4 * i, ys);
        }
    }

    private void sum(GpuVm vm, long xAddr, long out, long n) {
        float total = 0.0f;
        for (long i = 0; i < n; i += CHUNK_FLOATS) {
            vm.checkAbort();
            int m = (int) Math.min(CHUNK_FLOATS, n - i);
            MemorySegment xs = x.asSlice(0, 4L * m);
            vm.read(xAddr + 4 * i, xs);
            for (int b = 0; b < m; b += SUM_BLOCK) {
                float partial = 0.0f;
                for (int k = b; k < Math.min(m, b + SUM_BLOCK); k++) {
                    partial += xs.getAtIndex(F32, k);
                }
                total += partial;
            }
        }
        MemorySegment result = y.asSlice(0, 4);
        result.set(F32, 0, total);
        vm.write(out, result);
    }

    private void crc32c(GpuVm vm, long src, long out, long n, int seed) {
        CRC32C crc = new CRC32C();
        for (long i = 0; i < n; i += CHUNK) {
            vm.checkAbort();
            MemorySegment part = x.asSlice(0, Math.min(CHUNK, n - i));
            vm.read(src + i, part);
            crc.update(part.asByteBuffer());
        }
        MemorySegment result = y.asSlice(0, 4);
        result.set(U32, 0, (int) crc.getValue() ^ zeros(seed, n));
        vm.write(out, result);
    }

    /**
     * The CRC register {@code s} after {@code n} zero bytes (the raw shift register, no pre- or post-inversion), so
     * that {@code crc32c(A || B) == crc32c(B) ^ zeros(crc32c(A), |B|)}: CRC is affine in its initial value and the
     * pre- and post-inversions cancel. Uses the operator for one zero byte raised to {@code n} by squaring.
     */
    static int zeros(int s, long n) {
        int[] op = new int[32];
        for (int bit = 0; bit < 32; bit++) {
            int v = 1 << bit;
            for (int k = 0; k < 8; k++) {
                v = (v >>> 1) ^ (POLY & -(v & 1));
            }
            op[bit] = v;
        }
        for (long left = n; left != 0 && s != 0; left >>>= 1) {
            if ((left & 1) != 0) {
                s = apply(op, s);
            }
            int[] sq = new int[32];
            for (int bit = 0; bit < 32; bit++) {
                sq[bit] = apply(op, op[bit]);
            }
            op = sq;
        }
        return s;
    }

    private static int apply(int[] op, int v) {
        int r = 0;
        for (int bit = 0; v != 0; bit++, v >>>= 1) {
            if ((v & 1) != 0) {
                r ^= op[bit];
            }
        }
        return r;
    }
}
