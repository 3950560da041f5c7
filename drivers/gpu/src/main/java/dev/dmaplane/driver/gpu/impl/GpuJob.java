package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.List;
import java.util.function.Consumer;

/**
 * The payload of a {@code SchedJob} on a GPU engine ({@code struct amdgpu_job} with its IBs reduced): commands run
 * in order on one engine, one descriptor each; the job's hardware fence signals after the last one. {@code onFault} hears the fault
 * registers if the job halts its engine, before its fence signals.
 */
public record GpuJob(List<GpuCommand> commands, Consumer<HwFault> onFault) {
    public GpuJob {
        ErrnoException.check(commands != null && !commands.isEmpty(), Errno.EINVAL, "GPU job without commands");
        ErrnoException.check(onFault != null, Errno.EINVAL, "GPU job without a fault listener");
        commands = List.copyOf(commands);
    }

    /** A job whose fault shows only as the errno on its fence. */
    public static GpuJob of(GpuCommand... commands) {
        return new GpuJob(List.of(commands), fault -> { });
    }

    /** Whether every command runs on a copy engine ({@code true}) or every one on the compute engine. */
    boolean copyClass() {
        boolean copy = commands.getFirst().copyClass();
        for (GpuCommand c : commands) {
            ErrnoException.check(c.copyClass() == copy, Errno.EINVAL, "GPU job mixes copy and compute commands: " + c);
        }
        return copy;
    }
}
