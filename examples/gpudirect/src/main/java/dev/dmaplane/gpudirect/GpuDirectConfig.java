package dev.dmaplane.gpudirect;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.EnumSet;
import java.util.Set;

/**
 * What the demo runs and with which sizes.
 *
 * @param size        bytes moved by each path ({@code ib_write_bw -s}'s buffer; 64 MiB in the demo)
 * @param message     bytes per RDMA WRITE or READ work request
 * @param bounceChunk bytes per step of the bounce path (one RDMA WRITE into a host slot, one copy-engine job to VRAM)
 * @param seed        seed of the payload's floats
 * @param scenarios   the parts to run
 */
public record GpuDirectConfig(long size, long message, long bounceChunk, long seed, Set<Scenario> scenarios) {
    static final long MIB = 1L << 20;
    /** The demo's sizes: 64 MiB in 1 MiB messages, the bounce path in 4 MiB steps. */
    public static final GpuDirectConfig DEFAULT = new GpuDirectConfig(64 * MIB, MIB, 4 * MIB, 12,
            EnumSet.allOf(Scenario.class));

    public GpuDirectConfig {
        check(size >= 4 * MIB && size % (2 * MIB) == 0, "size " + size + " is not a multiple of 2 MiB from 4 MiB");
        check(message > 0 && message % 4096 == 0 && size % message == 0, "message size " + message
                + " is not a multiple of 4 KiB dividing " + size);
        check(bounceChunk >= message && bounceChunk % message == 0 && size % bounceChunk == 0, "bounce chunk "
                + bounceChunk + " is not a multiple of the message size " + message + " dividing " + size);
        check(scenarios != null && !scenarios.isEmpty(), "no scenario to run");
        scenarios = Set.copyOf(scenarios);
    }

    /** This configuration running only {@code which}. */
    public GpuDirectConfig only(Scenario first, Scenario... rest) {
        return new GpuDirectConfig(size, message, bounceChunk, seed, EnumSet.of(first, rest));
    }

    /** This configuration with {@code size} bytes per path. */
    public GpuDirectConfig withSize(long bytes) {
        return new GpuDirectConfig(bytes, message, bounceChunk, seed, scenarios);
    }

    private static void check(boolean ok, String message) {
        ErrnoException.check(ok, Errno.EINVAL, "gpudirect: " + message);
    }
}
