package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.Command;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static dev.dmaplane.driver.gpu.model.GpuRegs.ENGINE_COMPUTE;
import static dev.dmaplane.driver.gpu.model.GpuRegs.ENGINE_COUNT;
import static dev.dmaplane.driver.gpu.model.GpuRegs.ENGINE_NAMES;

/**
 * The accelerator core's generic commands in this GPU's terms ({@code amdgpu_cs}'s IB parsing, reduced): copy and
 * fill on the copy engines, the kernels {@code saxpy}, {@code sum}, {@code crc32c} and {@code spin} on the compute
 * engine, each addressed in the submitting context's VM slot.
 */
final class CoreJobs {
    /** Kernel names and their argument lists, as the datasheet's KERNEL descriptor takes them. */
    static final Map<String, String> KERNELS = Map.of(
            "saxpy", "x, y, n, a (f32 bits): y[i] = a * x[i] + y[i]",
            "sum", "x, out, n: out = the f32 sum of x[0..n) in the datasheet's order",
            "crc32c", "data, out, length, seed: out = CRC32C of length bytes continuing seed",
            "spin", "(none): runs until the engine is reset");
    private static final Map<String, Integer> ARGS = Map.of("saxpy", 4, "sum", 3, "crc32c", 4, "spin", 0);

    private CoreJobs() {
    }

    /**
     * Checks that engine {@code engine} can run {@code commands}: copies and fills on a copy engine, known kernels
     * with their argument counts on the compute engine.
     *
     * @throws ErrnoException {@code EINVAL} naming the engine and the command it cannot run
     */
    static void check(int engine, List<Command> commands) {
        ErrnoException.check(engine >= 0 && engine < ENGINE_COUNT, Errno.EINVAL, "engine " + engine + " is not 0.."
                + (ENGINE_COUNT - 1));
        boolean compute = engine == ENGINE_COMPUTE;
        for (Command c : commands) {
            switch (c) {
                case Command.Copy copy -> ErrnoException.check(!compute, Errno.EINVAL, ENGINE_NAMES[engine]
                        + " runs kernels, not " + copy);
                case Command.Fill fill -> ErrnoException.check(!compute, Errno.EINVAL, ENGINE_NAMES[engine]
                        + " runs kernels, not " + fill);
                case Command.Launch l -> {
                    ErrnoException.check(compute, Errno.EINVAL, ENGINE_NAMES[engine] + " is a copy engine: it cannot run "
                            + "kernel '" + l.kernel() + "'");
                    Integer n = ARGS.get(l.kernel());
                    ErrnoException.check(n != null, Errno.EINVAL, "unknown kernel '" + l.kernel() + "'; this GPU runs "
                            + KERNELS.keySet().stream().sorted().toList());
                    ErrnoException.check(l.args().size() == n, Errno.EINVAL, "kernel " + l.kernel() + " takes " + n
                            + " arguments (" + KERNELS.get(l.kernel()) + "), not " + l.args().size());
                }
            }
        }
    }

    /** The descriptors of {@code commands} in VM slot {@code vm}; the commands passed {@link #check}. */
    static List<GpuCommand> translate(int vm, List<Command> commands) {
        List<GpuCommand> out = new ArrayList<>(commands.size());
        for (Command c : commands) {
            out.add(switch (c) {
                case Command.Copy copy -> new GpuCommand.Copy(vm, copy.src(), copy.dst(), copy.length());
                case Command.Fill fill -> new GpuCommand.Fill(vm, fill.dst(), fill.length(), fill.pattern());
                case Command.Launch l -> kernel(vm, l);
            });
        }
        return out;
    }

    private static GpuCommand kernel(int vm, Command.Launch l) {
        List<Long> a = l.args();
        return switch (l.kernel()) {
            case "saxpy" -> new GpuCommand.Saxpy(vm, a.get(0), a.get(1), a.get(2), Float.intBitsToFloat(a.get(3).intValue()));
            case "sum" -> new GpuCommand.Sum(vm, a.get(0), a.get(1), a.get(2));
            case "crc32c" -> new GpuCommand.Crc32c(vm, a.get(0), a.get(1), a.get(2), a.get(3).intValue());
            case "spin" -> new GpuCommand.Spin(vm);
            default -> throw new ErrnoException(Errno.EINVAL, "unknown kernel '" + l.kernel() + "'");
        };
    }
}
