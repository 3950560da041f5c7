package dev.dmaplane.accel.spi;

import dev.dmaplane.accel.Command;

import java.util.List;

/**
 * The payload of every job the core hands a provider's scheduler ({@code SchedJob.payload()}), as
 * {@code amdgpu_job} carries its VM and indirect buffers: the submitting context's VM as the provider itself made
 * it in {@link AccelProvider#createVm} (so the backend finds its page tables), and the commands, already checked
 * by {@link AccelProvider#checkJob}. Every object the commands use was validated and its page tables written
 * before the job was armed.
 *
 * @param name a name for traces ({@code "accel0 ctx 1"})
 */
public record GpuJob(String name, int engine, GpuVmOps vm, List<Command> commands) {
    public GpuJob {
        commands = List.copyOf(commands);
    }
}
