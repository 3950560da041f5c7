package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * One GPU command, encoded as one ring descriptor of the datasheet ({@code GpuRegs}): the packets amdgpu's
 * {@code amdgpu_ring_emit_*} and SDMA's {@code emit_copy_buffer}/{@code emit_fill_buffer} write. Addresses are GPU
 * virtual addresses of VM {@link #vm()}, or physical (aperture-tagged) ones in VM 0.
 */
public sealed interface GpuCommand {
    ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** The VM slot whose addresses the command uses; 0 = physical. */
    int vm();

    /** Whether a copy engine runs it (else the compute engine). */
    boolean copyClass();

    int opcode();

    /** The descriptor's ARG0..ARG4. */
    long[] args();

    /** {@code OP_COPY}: {@code length} bytes from {@code src} to {@code dst}. */
    record Copy(int vm, long src, long dst, long length) implements GpuCommand {
        public Copy {
            checkVm(vm);
            positive("copy length", length);
        }

        public boolean copyClass() {
            return true;
        }

        public int opcode() {
            return OP_COPY;
        }

        public long[] args() {
            return new long[] {src, dst, length};
        }
    }

    /** {@code OP_FILL}: {@code length} bytes at {@code dst} with the little-endian bytes of {@code pattern}. */
    record Fill(int vm, long dst, long length, int pattern) implements GpuCommand {
        public Fill {
            checkVm(vm);
            positive("fill length", length);
        }

        public boolean copyClass() {
            return true;
        }

        public int opcode() {
            return OP_FILL;
        }

        public long[] args() {
            return new long[] {dst, length, pattern & 0xFFFF_FFFFL};
        }
    }

    /** {@code KERNEL_SAXPY}: {@code y[i] = a * x[i] + y[i]} for {@code n} f32 elements. */
    record Saxpy(int vm, long x, long y, long n, float a) implements GpuCommand {
        public Saxpy {
            checkVm(vm);
            positive("saxpy n", n);
        }

        public boolean copyClass() {
            return false;
        }

        public int opcode() {
            return OP_KERNEL;
        }

        public long[] args() {
            return new long[] {KERNEL_SAXPY, x, y, n, Float.floatToRawIntBits(a) & 0xFFFF_FFFFL};
        }
    }

    /** {@code KERNEL_SUM}: the f32 sum of {@code n} elements at {@code x} into the f32 at {@code out}. */
    record Sum(int vm, long x, long out, long n) implements GpuCommand {
        public Sum {
            checkVm(vm);
            positive("sum n", n);
        }

        public boolean copyClass() {
            return false;
        }

        public int opcode() {
            return OP_KERNEL;
        }

        public long[] args() {
            return new long[] {KERNEL_SUM, x, out, n};
        }
    }

    /** {@code KERNEL_CRC32C}: the CRC32C of {@code length} bytes at {@code data}, continuing {@code seed}, into {@code out}. */
    record Crc32c(int vm, long data, long out, long length, int seed) implements GpuCommand {
        public Crc32c {
            checkVm(vm);
            positive("crc32c length", length);
        }

        public boolean copyClass() {
            return false;
        }

        public int opcode() {
            return OP_KERNEL;
        }

        public long[] args() {
            return new long[] {KERNEL_CRC32C, data, out, length, seed & 0xFFFF_FFFFL};
        }
    }

    /** {@code KERNEL_SPIN}: runs until the engine is reset (the hung job). */
    record Spin(int vm) implements GpuCommand {
        public Spin {
            checkVm(vm);
        }

        public boolean copyClass() {
            return false;
        }

        public int opcode() {
            return OP_KERNEL;
        }

        public long[] args() {
            return new long[] {KERNEL_SPIN};
        }
    }

    /**
     * Writes the command into the 64-byte descriptor {@code d} with {@code seqno}; status pending. With
     * {@code interrupt} the engine raises its vector once the descriptor ends (a job's last one, as amdgpu's fence
     * packet after the IBs); a fault raises it whatever the flag.
     */
    default void encode(MemorySegment d, long seqno, boolean interrupt) {
        d.fill((byte) 0);
        d.set(U32, DESC_OPCODE, opcode());
        d.set(U32, DESC_FLAGS, (interrupt ? FLAG_INTERRUPT : 0) | (vm() == 0 ? FLAG_PHYSICAL : 0));
        d.set(U32, DESC_VM, vm());
        d.set(U32, DESC_STATUS, ST_PENDING);
        d.set(U64, DESC_SEQNO, seqno);
        long[] a = args();
        for (int i = 0; i < a.length; i++) {
            d.set(U64, DESC_ARG0 + 8L * i, a[i]);
        }
    }

    private static void checkVm(int vm) {
        ErrnoException.check(vm >= 0 && vm < VM_COUNT, Errno.EINVAL, "GPU command VM " + vm + " outside 0.."
                + (VM_COUNT - 1));
    }

    private static void positive(String what, long value) {
        ErrnoException.check(value > 0, Errno.EINVAL, what + " " + value + " must be positive");
    }
}
