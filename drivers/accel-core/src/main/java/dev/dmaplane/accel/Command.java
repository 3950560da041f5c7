package dev.dmaplane.accel;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * One command of a job a user submits ({@code drm_amdgpu_cs_chunk_ib}'s indirect buffer, {@code xe_exec}'s batch),
 * generic over accelerators: addresses are GPU virtual addresses of the context's VM, which the engine's MMU
 * translates; an address outside the VM is a GPU page fault ({@code EFAULT} on the job's fence). The provider
 * checks what only it knows (a kernel's name and argument count) when the job is submitted.
 */
public sealed interface Command permits Command.Copy, Command.Fill, Command.Launch {
    /** Copies {@code length} bytes from VA {@code src} to VA {@code dst} (a copy engine's linear copy). */
    record Copy(long src, long dst, long length) implements Command {
        public Copy {
            checkRange("copy source", src, length);
            checkRange("copy destination", dst, length);
        }
    }

    /**
     * Fills {@code length} bytes at VA {@code dst} with the 32-bit {@code pattern}, little-endian
     * ({@code amdgpu_fill_buffer}'s dword fill); {@code length} a multiple of 4.
     */
    record Fill(long dst, long length, int pattern) implements Command {
        public Fill {
            checkRange("fill", dst, length);
            ErrnoException.check(length % 4 == 0, Errno.EINVAL, "fill length " + length + " is not a multiple of 4");
        }
    }

    /** Runs the compute kernel {@code kernel} with 64-bit {@code args} (a dispatch of a compute queue). */
    record Launch(String kernel, List<Long> args) implements Command {
        public Launch {
            ErrnoException.check(kernel != null && !kernel.isBlank(), Errno.EINVAL, "kernel name '" + kernel + "' is blank");
            ErrnoException.check(args != null && args.stream().noneMatch(Objects::isNull), Errno.EINVAL, "kernel " + kernel + ": arguments "
                    + args + " are null or hold a null");
            args = List.copyOf(args);
        }

        public static Launch of(String kernel, long... args) {
            return new Launch(kernel, Arrays.stream(args).boxed().toList());
        }
    }

    private static void checkRange(String what, long va, long length) {
        if (va < 0 || length <= 0 || length > Long.MAX_VALUE - va) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s range %#x+%#x is negative, empty or overflows",
                    what, va, length));
        }
    }
}
