package dev.dmaplane.hw.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciReset;
import dev.dmaplane.pci.PciTopology;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.locks.ReentrantLock;
import java.util.regex.Pattern;

/**
 * The device models of one machine and the devices they realized: a model arriving realizes every function that
 * names it and hands it to the machine (hot-add); a model leaving quiesces its devices, takes the hardware out of
 * the slot, has the machine remove the functions from the driver core, then detaches and removes the devices
 * (surprise removal). Functions naming a model that is not loaded stay absent.
 */
public final class ModelBus {
    private static final Logger LOG = LoggerFactory.getLogger(ModelBus.class);
    private static final Pattern NAME = Pattern.compile("[a-z0-9][a-z0-9_-]{0,31}");

    /** The machine's side of hardware coming and going. */
    public interface Slots {
        /** {@code fn}'s hardware is up: put it on the driver core, where drivers probe it. */
        void arrived(PciFunction fn);

        /** {@code fn}'s hardware is gone: take it off the driver core (drivers are removed, DMA reclaimed). */
        void left(PciFunction fn);
    }

    private record Realized(DeviceModel model, ModelDevice device, ModelContextImpl ctx, Runnable stopResets) {
    }

    private final PciTopology pci;
    private final Slots slots;
    private final ReentrantLock lock = new ReentrantLock();
    private final Map<String, DeviceModel> models = new TreeMap<>();
    private final Map<PciFunction, Realized> realized = new LinkedHashMap<>();
    private boolean closed;

    public ModelBus(PciTopology pci, Slots slots) {
        this.pci = pci;
        this.slots = slots;
    }

    /**
     * Boot: registers {@code initial} and realizes the functions that name them; the other functions naming a model
     * are left absent. Nothing is handed to the driver core (the machine adds the present functions itself).
     *
     * @throws ErrnoException {@code EINVAL} for a bridge naming a model or a bad model name; {@code EEXIST} for two
     *                        models of one name
     */
    public void boot(List<DeviceModel> initial) {
        lock.lock();
        try {
            for (DeviceModel m : initial) {
                put(m);
            }
            for (PciFunction fn : pci.functions()) {
                Optional<String> name = fn.model();
                if (name.isEmpty()) {
                    continue;
                }
                if (fn.isBridge()) {
                    throw new ErrnoException(Errno.EINVAL, fn.bdf() + " is a bridge and names device model '"
                            + name.get() + "'; device models emulate endpoints");
                }
                DeviceModel m = models.get(name.get());
                if (m == null) {
                    pci.removeHardware(fn, notLoaded(name.get()));
                } else {
                    realize(fn, m);
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /**
     * A model arrives: every absent function that names it gets its hardware and is handed to the machine.
     *
     * @throws ErrnoException {@code EINVAL} for a bad name; {@code EEXIST} if a model of that name is loaded;
     *                        {@code ENODEV} after the machine closed
     */
    public void add(DeviceModel model) {
        lock.lock();
        try {
            requireOpen();
            put(model);
            for (PciFunction fn : pci.functions()) {
                if (fn.model().filter(model.name()::equals).isPresent() && !realized.containsKey(fn)) {
                    pci.insertHardware(fn);
                    if (realize(fn, model)) {
                        slots.arrived(fn);
                    }
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /**
     * A model leaves: each of its devices is quiesced, its hardware leaves the slot, the machine removes the
     * function from the driver core, and the device is detached and removed.
     *
     * @return whether {@code model} was loaded
     */
    public boolean remove(DeviceModel model) {
        lock.lock();
        try {
            if (model == null || models.get(model.name()) != model) {
                return false;
            }
            List<PciFunction> mine = new ArrayList<>();
            realized.forEach((fn, r) -> {
                if (r.model() == model) {
                    mine.add(fn);
                }
            });
            for (int i = mine.size() - 1; i >= 0; i--) {
                PciFunction fn = mine.get(i);
                Realized r = realized.get(fn);
                quiesce(fn, r);
                pci.removeHardware(fn, "device model '" + model.name() + "' was unloaded");
                slots.left(fn);
                unrealize(fn);
            }
            models.remove(model.name());
            return true;
        } finally {
            lock.unlock();
        }
    }

    /** Quiesces every device (before the machine takes its devices down). */
    public void quiesceAll() {
        lock.lock();
        try {
            realized.forEach(this::quiesce);
        } finally {
            lock.unlock();
        }
    }

    /** Detaches and removes every device and forgets the models; later {@link #add} calls fail. */
    public void close() {
        lock.lock();
        try {
            closed = true;
            List<PciFunction> all = new ArrayList<>(realized.keySet());
            for (int i = all.size() - 1; i >= 0; i--) {
                unrealize(all.get(i));
            }
            models.clear();
        } finally {
            lock.unlock();
        }
    }

    /** The names of the loaded models. */
    public List<String> names() {
        lock.lock();
        try {
            return List.copyOf(models.keySet());
        } finally {
            lock.unlock();
        }
    }

    /** The device a model realized in {@code fn}, if any. */
    public Optional<ModelDevice> device(PciFunction fn) {
        lock.lock();
        try {
            return Optional.ofNullable(realized.get(fn)).map(Realized::device);
        } finally {
            lock.unlock();
        }
    }

    private void put(DeviceModel m) {
        if (m == null) {
            throw new ErrnoException(Errno.EINVAL, "a device model is null");
        }
        String name = m.name();
        if (name == null || !NAME.matcher(name).matches()) {
            throw new ErrnoException(Errno.EINVAL, "device model name '" + name + "' of " + m.getClass().getName()
                    + " must be 1 to 32 of a-z, 0-9, '-' and '_', starting with a letter or digit");
        }
        DeviceModel old = models.get(name);
        if (old != null) {
            throw new ErrnoException(Errno.EEXIST, "device model '" + name + "' is already loaded (" + old.getClass().getName() + ")");
        }
        models.put(name, m);
    }

    /** Realizes {@code fn}; a model that fails leaves the function absent, saying why. */
    private boolean realize(PciFunction fn, DeviceModel m) {
        ModelContextImpl ctx = new ModelContextImpl(fn, m.name());
        ModelDevice dev;
        try {
            dev = m.realize(ctx);
            if (dev == null) {
                throw new ErrnoException(Errno.EINVAL, "realize returned no device");
            }
        } catch (RuntimeException e) {
            ctx.close();
            if (!(e instanceof ErrnoException)) {
                LOG.error("device model '{}' failed on {}", m.name(), fn.bdf(), e);
            }
            String why = "device model '" + m.name() + "' refused it: " + e.getMessage();
            pci.removeHardware(fn, why);
            LOG.warn("{}: {}", fn.bdf(), why);
            return false;
        }
        pci.setDmaAddressBits(fn, ctx.declaredDmaAddressBits());
        Runnable stopResets = fn.addResetListener(kind -> reset(fn, m, dev, kind));
        realized.put(fn, new Realized(m, dev, ctx, stopResets));
        return true;
    }

    /** The function's hardware reset (FLR, secondary bus reset): the device returns to its power-on state. */
    private static void reset(PciFunction fn, DeviceModel m, ModelDevice dev, PciReset kind) {
        try {
            dev.reset(kind);
        } catch (RuntimeException e) {
            LOG.error("device model '{}': {} reset of {} failed", m.name(), kind, fn.bdf(), e);
        }
    }

    private void quiesce(PciFunction fn, Realized r) {
        try {
            r.device().quiesce();
        } catch (RuntimeException e) {
            LOG.error("device model '{}': quiescing {} failed", r.model().name(), fn.bdf(), e);
        }
    }

    private void unrealize(PciFunction fn) {
        Realized r = realized.remove(fn);
        r.stopResets().run();
        r.ctx().close();
        try {
            r.device().remove();
        } catch (RuntimeException e) {
            LOG.error("device model '{}': removing {} failed", r.model().name(), fn.bdf(), e);
        }
    }

    private void requireOpen() {
        if (closed) {
            throw new ErrnoException(Errno.ENODEV, "the machine is shut down; no device model can arrive");
        }
    }

    private static String notLoaded(String model) {
        return "device model '" + model + "' is not loaded";
    }
}
