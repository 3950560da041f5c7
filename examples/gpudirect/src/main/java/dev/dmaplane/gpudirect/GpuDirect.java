package dev.dmaplane.gpudirect;

import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;

import java.util.function.Consumer;

/**
 * The headline demo: GPUDirect RDMA on the default machine. The GPU ({@code 0000:03:00.0}, driver {@code gpu}) and
 * rxe0 ({@code 0000:04:00.0}) sit under one PCIe switch, rxe1 ({@code 0000:05:00.0}) on another root port. Each
 * {@link Scenario} prints what it does with figures and checks what it claims; a scenario that ends with an error
 * is a failed check and the next one still runs. Everything it made is released before it returns.
 */
public final class GpuDirect {
    /** The accelerator driver whose device the demo opens. */
    public static final String GPU_DRIVER = "gpu";
    /** The HCA under the GPU's switch. */
    public static final String NEAR = "rxe0";
    public static final String NEAR_BDF = "0000:04:00.0";
    /** The HCA on the other root port. */
    public static final String FAR = "rxe1";
    public static final String FAR_BDF = "0000:05:00.0";

    private GpuDirect() {
    }

    /** {@link #run(Machine, AccelCore, RdmaCore, GpuDirectConfig, Consumer)} printing nowhere but the report. */
    public static GpuDirectReport run(Machine machine, AccelCore accel, RdmaCore rdma, GpuDirectConfig cfg) {
        return run(machine, accel, rdma, cfg, line -> {
        });
    }

    /**
     * Runs the configured scenarios, handing each printed line to {@code sink} as it comes.
     *
     * @throws ErrnoException {@code EINVAL} for a null argument; {@code ENODEV} when the machine has no GPU of
     *                        driver {@code gpu} or no rxe0/rxe1 (nothing is left allocated then)
     */
    public static GpuDirectReport run(Machine machine, AccelCore accel, RdmaCore rdma, GpuDirectConfig cfg,
                                      Consumer<String> sink) {
        ErrnoException.check(machine != null && accel != null && rdma != null && cfg != null && sink != null,
                Errno.EINVAL, "gpudirect needs a machine, the accelerator and RDMA cores, a configuration and a sink");
        Printout out = new Printout(sink);
        try (Stage s = new Stage(machine, accel, rdma, cfg, out)) {
            out.note("GPU %s (%s, %s), rxe0 (%s, under the GPU's switch), rxe1 (%s, other root port); payload %d MiB of "
                            + "f32 from seed %d", s.gpu.device.name(), GPU_DRIVER, s.gpu.device.vram().function().bdf(),
                    NEAR_BDF, FAR_BDF, cfg.size() >> 20, cfg.seed());
            PeerToPeer.Shared shared = null;
            try {
                if (cfg.scenarios().contains(Scenario.GPUDIRECT) || cfg.scenarios().contains(Scenario.NO_P2P)) {
                    shared = guarded(out, Scenario.GPUDIRECT, () -> PeerToPeer.run(s));
                }
                if (cfg.scenarios().contains(Scenario.NO_P2P) && shared != null) {
                    PeerToPeer.Shared sh = shared;
                    guarded(out, Scenario.NO_P2P, () -> {
                        NoPeerPath.run(s, sh);
                        return null;
                    });
                }
            } finally {
                if (shared != null) {
                    shared.mr().destroy();
                    shared.buf().put();
                    s.gpu.ctx.closeBo(shared.handle());
                }
            }
            if (cfg.scenarios().contains(Scenario.EVICTION)) {
                guarded(out, Scenario.EVICTION, () -> {
                    EvictionUnderTraffic.run(s);
                    return null;
                });
            }
            if (cfg.scenarios().contains(Scenario.FALLBACKS)) {
                guarded(out, Scenario.FALLBACKS, () -> {
                    Fallbacks.run(s);
                    return null;
                });
            }
        }
        return out.report();
    }

    /** A scenario's body; an interrupt is kept as the thread's status. */
    @FunctionalInterface
    private interface Body<T> {
        T run() throws InterruptedException;
    }

    private static <T> T guarded(Printout out, Scenario s, Body<T> body) {
        try {
            return body.run();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            out.failed(s, new ErrnoException(Errno.EINTR, "gpudirect: " + s + " interrupted"));
        } catch (RuntimeException e) {
            out.failed(s, e);
        }
        return null;
    }
}
