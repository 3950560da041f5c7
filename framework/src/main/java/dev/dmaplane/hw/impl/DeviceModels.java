package dev.dmaplane.hw.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;

import java.util.Map;
import java.util.TreeMap;
import java.util.function.Function;

/**
 * The emulated hardware a machine file can name with {@code model:}: each model attaches its register logic to
 * the function's BARs at boot and detaches at shutdown.
 */
public final class DeviceModels {
    private static final Map<String, Function<PciFunction, AutoCloseable>> MODELS = new TreeMap<>(Map.of(
            "gpu", DeviceModels::gpu));

    private DeviceModels() {
    }

    /**
     * Attaches the model {@code fn} names.
     *
     * @return what detaches it again
     * @throws ErrnoException {@code EINVAL} naming the model and the known ones if it is unknown
     */
    public static AutoCloseable attach(PciFunction fn) {
        String name = fn.model().orElseThrow();
        Function<PciFunction, AutoCloseable> m = MODELS.get(name);
        if (m == null) {
            throw new ErrnoException(Errno.EINVAL, fn.name() + ": unknown device model '" + name + "' (known: "
                    + String.join(", ", MODELS.keySet()) + ")");
        }
        return m.apply(fn);
    }

    /** For now a GPU is its copy engine behind BAR0 (its VRAM BAR is plain device memory). */
    private static AutoCloseable gpu(PciFunction fn) {
        Bar.Mmio regs = fn.bar(0).orElseThrow(() -> new ErrnoException(Errno.EINVAL,
                fn.name() + ": model 'gpu' needs BAR0 for its registers")).mmio();
        CopyEngine engine = new CopyEngine(fn);
        regs.attach(engine);
        return () -> regs.detach(engine);
    }
}
