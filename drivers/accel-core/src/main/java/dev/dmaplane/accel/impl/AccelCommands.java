package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.accel.AccelDevice;
import dev.dmaplane.accel.BoInfo;
import dev.dmaplane.accel.spi.EngineInfo;
import dev.dmaplane.accel.spi.VramInfo;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.shell.CommandUsage;
import org.apache.felix.service.command.Descriptor;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.util.List;
import java.util.function.BiConsumer;

/**
 * The {@code accel:} commands of the Gogo shell: {@code devices} (as {@code /sys/class/accel} and amdgpu's
 * {@code mem_info_vram_*} show them), {@code objects} (each context's GEM objects with placement, as
 * {@code /sys/kernel/debug/dri/N/gem} lists them) and {@code fdinfo} (each context's {@code drm-*} keys,
 * {@code Documentation/gpu/drm-usage-stats.rst}). Registered with plain {@code osgi.command.*} properties, so
 * the bundle needs no Gogo runtime.
 */
@Component(service = AccelCommands.class, property = {
        "osgi.command.scope=accel",
        "osgi.command.function=devices",
        "osgi.command.function=objects",
        "osgi.command.function=fdinfo"})
public final class AccelCommands {
    private static final long KIB = 1024;

    private final AccelCore core;

    @Activate
    public AccelCommands(@Reference AccelCore core) {
        this.core = core;
    }

    /** What the Gogo runtime calls when no form of a command takes its arguments: the command's usage, EINVAL. */
    public String _main(String... argv) {
        throw CommandUsage.wrongArguments(this, "accel", argv);
    }

    /** One line per device: driver, function, VRAM total, visible and free, engines. */
    @Descriptor("one line per device: driver, function, VRAM, engines")
    public String devices() {
        StringBuilder sb = new StringBuilder();
        for (AccelDevice d : core.devices()) {
            VramInfo v = d.vram();
            sb.append(d.name()).append(": driver ").append(d.driverName()).append(" on ").append(v.function().bdf())
                    .append(" vram total ").append(v.totalSize() / KIB).append(" KiB visible ").append(v.visibleSize() / KIB)
                    .append(" KiB free ").append(d.vramAvailable() / KIB).append(" KiB engines");
            for (EngineInfo e : d.engines()) {
                sb.append(' ').append(e.name()).append('(').append(e.engineClass().name().toLowerCase()).append(')');
            }
            sb.append('\n');
        }
        return sb.isEmpty() ? "no accelerator devices" : sb.toString().stripTrailing();
    }

    /** Every context's objects on every device. */
    @Descriptor("every context's objects on every device")
    public String objects() {
        return objects(null);
    }

    /** Every context's objects on device {@code dev} (every device for null): handle, size, placement, pins, mappings. */
    @Descriptor("every context's objects on device DEV")
    public String objects(@Descriptor("DEV") String dev) {
        return perContext(dev, (ctx, sb) -> {
            List<BoInfo> objects = ctx.objects();
            sb.append(ctx.device().name()).append(" ctx ").append(ctx.id()).append(": ").append(objects.size())
                    .append(" object(s)\n");
            for (BoInfo b : objects) {
                sb.append("    handle ").append(b.handle()).append(" size ").append(b.size()).append(" placement ")
                        .append(b.placement().name().toLowerCase()).append(b.pinned() ? " pinned" : "")
                        .append(" mappings ").append(b.vmMappings()).append('\n');
            }
        });
    }

    /** Every context's fdinfo keys on every device. */
    @Descriptor("every context's fdinfo keys on every device (drm-usage-stats)")
    public String fdinfo() {
        return fdinfo(null);
    }

    /** Every context's fdinfo keys on device {@code dev} (every device for null), one {@code key: value} a line. */
    @Descriptor("every context's fdinfo keys on device DEV")
    public String fdinfo(@Descriptor("DEV") String dev) {
        return perContext(dev, (ctx, sb) -> {
            sb.append(ctx.device().name()).append(" ctx ").append(ctx.id()).append(":\n");
            ctx.fdinfo().forEach((k, v) -> sb.append("    ").append(k).append(":\t").append(v).append('\n'));
        });
    }

    private String perContext(String dev, BiConsumer<AccelContext, StringBuilder> line) {
        if (dev != null && core.device(dev).isEmpty()) {
            return "no accelerator device named " + dev;
        }
        StringBuilder sb = new StringBuilder();
        for (AccelDevice d : core.devices()) {
            if (dev != null && !dev.equals(d.name())) {
                continue;
            }
            for (AccelContext ctx : d.contexts()) {
                try {
                    line.accept(ctx, sb);
                } catch (ErrnoException closing) {
                    sb.append(ctx.device().name()).append(" ctx ").append(ctx.id()).append(": ")
                            .append(closing.getMessage()).append('\n');
                }
            }
        }
        return sb.isEmpty() ? "no accelerator contexts" : sb.toString().stripTrailing();
    }
}
