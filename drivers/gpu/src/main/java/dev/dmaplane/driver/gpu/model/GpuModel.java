package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.pci.Bar;
import org.osgi.service.component.annotations.Component;

import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The {@code gpu} device model (QEMU's {@code TypeInfo} and {@code realize}): registers in BAR0, VRAM behind the
 * memory BAR named by property {@code vramBar} (default 2) and {@code vramSize} bytes of VRAM in all (default: that
 * BAR's size; the rest is reachable only by the engines).
 */
@Component(service = DeviceModel.class)
public final class GpuModel implements DeviceModel {
    /** The name machine files give it. */
    public static final String NAME = "gpu";
    public static final String PROP_VRAM_BAR = "vramBar";
    public static final String PROP_VRAM_SIZE = "vramSize";
    /** The address bits its engines drive on the bus: a GFX9 memory controller's 44 (amdgpu's {@code DMA_BIT_MASK(44)}). */
    public static final int DMA_ADDRESS_BITS = 44;
    private static final Pattern SIZE = Pattern.compile("(\\d+)\\s*(K|KiB|M|MiB|G|GiB|T|TiB)?");

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public ModelDevice realize(ModelContext ctx) {
        String bdf = ctx.function().bdf().toString();
        if (ctx.function().bar(0).isEmpty()) {
            throw new ErrnoException(Errno.EINVAL, "model 'gpu' needs BAR0 for its registers; " + bdf + " has none");
        }
        Map<String, String> props = ctx.properties();
        String barText = props.getOrDefault(PROP_VRAM_BAR, "2");
        int vramBar;
        try {
            vramBar = Integer.parseInt(barText.strip());
        } catch (NumberFormatException e) {
            throw new ErrnoException(Errno.EINVAL, bdf + ": vramBar '" + barText + "' is not a BAR index");
        }
        ctx.dmaAddressBits(DMA_ADDRESS_BITS);
        Bar.Memory window = ctx.deviceMemory(vramBar);
        String sizeText = props.get(PROP_VRAM_SIZE);
        long size = sizeText == null ? window.size() : size(bdf, sizeText);
        if (size % Vram.CHUNK != 0 && size != window.size()) {
            throw new ErrnoException(Errno.EINVAL, bdf + ": vramSize " + sizeText + " is not a multiple of 2 MiB");
        }
        GpuDevice device = new GpuDevice(ctx, new Vram(window, size, bdf));
        ctx.registers(0, device.registers());
        device.start();
        return device;
    }

    /** A byte count with an optional binary unit, as machine files write sizes ({@code 1GiB}). */
    static long size(String owner, String text) {
        Matcher m = SIZE.matcher(text.strip());
        if (!m.matches()) {
            throw new ErrnoException(Errno.EINVAL, owner + ": vramSize '" + text + "' is not a size such as 1GiB");
        }
        int shift = switch (m.group(2) == null ? "" : m.group(2)) {
            case "K", "KiB" -> 10;
            case "M", "MiB" -> 20;
            case "G", "GiB" -> 30;
            case "T", "TiB" -> 40;
            default -> 0;
        };
        try {
            long v = Long.parseLong(m.group(1));
            if (v == 0 || v > (Long.MAX_VALUE >> (shift + 1))) {
                throw new ErrnoException(Errno.EINVAL, owner + ": vramSize '" + text + "' is zero or too large");
            }
            return v << shift;
        } catch (NumberFormatException e) {
            throw new ErrnoException(Errno.EINVAL, owner + ": vramSize '" + text + "' is too large");
        }
    }
}
