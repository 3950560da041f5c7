package dev.dmaplane.accel.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;

import java.util.List;

/**
 * A buffer object's move from one backing to another ({@code ttm_device_funcs.move} with its
 * {@code ttm_resource}s): {@code size} bytes copied from the runs of {@code from} to those of {@code to}, after
 * every fence of {@code dependencies} signalled (the object's reservation fences of every usage, as
 * {@code amdgpu_ttm_copy_mem_to_mem} syncs to them).
 *
 * @param bo a name for traces ({@code "accel0 ctx 1 bo 3"})
 */
public record BoMove(String bo, long size, List<GpuRun> from, List<GpuRun> to, List<Fence> dependencies) {
    public BoMove {
        from = List.copyOf(from);
        to = List.copyOf(to);
        dependencies = List.copyOf(dependencies);
        if (length(from) != size || length(to) != size) {
            throw new ErrnoException(Errno.EINVAL, bo + ": a move of " + size + " bytes from runs of " + length(from)
                    + " to runs of " + length(to));
        }
    }

    private static long length(List<GpuRun> runs) {
        return runs.stream().mapToLong(GpuRun::length).sum();
    }
}
