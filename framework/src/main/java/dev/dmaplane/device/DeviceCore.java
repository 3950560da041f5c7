package dev.dmaplane.device;

import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * The driver core ({@code drivers/base/}): devices and drivers meet here. A device that appears is probed by
 * the first registered driver whose table matches; a driver that registers probes every unbound device it
 * matches. A device with a {@code driver_override} matches only the driver of that name, table or not. A probe that throws leaves that device unbound and touches no other. Unbinding runs the driver's
 * {@code remove}, then releases device-managed resources, then tells unbind listeners (dma-debug's leak check).
 */
public final class DeviceCore {
    private static final Logger LOG = LoggerFactory.getLogger(DeviceCore.class);

    /** {@code PAGE_SIZE - 1}: the shortest {@code driver_override} {@code driver_set_override} refuses. */
    static final int OVERRIDE_MAX = 4095;
    /** {@code pci_device_id_any}: what the overriding driver's probe gets when its table does not match. */
    private static final MatchEntry PCI_ANY = MatchEntry.Pci.ofClass(0, 0);

    private final Tracer tracer;
    private final ReentrantLock lock = new ReentrantLock();
    /** The devices by name, in the order they were added. */
    private final Map<String, Device> devices = new LinkedHashMap<>();
    /** Devices examined by name lookups, for tests: one per lookup. */
    private long lookupSteps;
    private final List<Driver> drivers = new ArrayList<>();
    private final List<Consumer<Device>> unbindListeners = new CopyOnWriteArrayList<>();

    public DeviceCore(Tracer tracer) {
        this.tracer = ErrnoException.requireNonNull(tracer, "tracer");
    }

    /** Puts {@code device} on its bus ({@code device_add}) and probes it against the registered drivers. */
    public void addDevice(Device device, DmaApi dma) {
        lock.lock();
        try {
            if (device.isPresent() || lookup(device.name()) != null) {
                throw new ErrnoException(Errno.EEXIST, "device " + device.name() + " is already on its bus");
            }
            device.setDma(dma);
            device.setPresent(true);
            devices.put(device.name(), device);
            device.parent().ifPresent(p -> p.addChild(device));
            tracer.emit(TraceKind.DEVICE_ADD, device.name(), -1, 0, device.bus().name());
            for (Driver d : drivers) {
                if (tryProbe(device, d)) {
                    break;
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /**
     * Takes {@code device} off its bus ({@code device_del}, hot unplug): its children go first, then its driver
     * is unbound. Later DMA API calls for it fail with {@code ENODEV}.
     */
    public void removeDevice(Device device) {
        ErrnoException.requireNonNull(device, "device_del: device");
        lock.lock();
        try {
            if (lookup(device.name()) != device) {
                throw new ErrnoException(Errno.ENODEV, "device " + device.name() + " is not on its bus");
            }
            List<Device> kids = device.children();
            for (int i = kids.size() - 1; i >= 0; i--) {
                if (kids.get(i).isPresent()) {
                    removeDevice(kids.get(i));
                }
            }
            unbindLocked(device);
            devices.remove(device.name());
            device.parent().ifPresent(p -> p.removeChild(device));
            device.setPresent(false);
            device.setDma(null);
            tracer.emit(TraceKind.DEVICE_REMOVE, device.name(), -1, 0, device.bus().name());
            notifyRemoved(device);
        } finally {
            lock.unlock();
        }
    }

    /** {@code BUS_NOTIFY_REMOVED_DEVICE}: every remove listener of {@code device}, each on its own. */
    private static void notifyRemoved(Device device) {
        for (Runnable l : device.removeListeners()) {
            try {
                l.run();
            } catch (RuntimeException e) {
                LOG.error("{}: remove listener failed", device.name(), e);
            }
        }
    }

    /**
     * Adds an auxiliary device below {@code parent} ({@code auxiliary_device_add}); it is deleted again when the
     * parent's current binding ends, as with the devm variant, or earlier by {@link #removeDevice}.
     */
    public AuxDevice addAuxDevice(Device parent, String modName, String devName, int id, Object platformData) {
        if (parent == null) {
            // auxiliary_device_init: "aux_dev has a NULL parent" is -EINVAL
            throw new ErrnoException(Errno.EINVAL, "auxiliary device " + modName + "." + devName + "." + id
                    + " has no parent");
        }
        lock.lock();
        try {
            if (!parent.isPresent()) {
                throw new ErrnoException(Errno.ENODEV, "parent " + parent.name() + " is not on its bus");
            }
            AuxDevice aux = new AuxDevice(parent, modName, devName, id, platformData);
            addDevice(aux, null);
            parent.devres().add("auxiliary " + aux.name(), () -> {
                if (aux.isPresent()) {
                    removeDevice(aux);
                }
            });
            return aux;
        } finally {
            lock.unlock();
        }
    }

    /** Registers a driver ({@code driver_register}) and probes every unbound device it matches. */
    public void registerDriver(Driver driver) {
        if (driver == null) {
            throw new ErrnoException(Errno.EINVAL, "driver_register: the driver is null");
        }
        String name = driver.name();
        if (name == null || name.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, "driver_register: " + driver.getClass().getName() + " has no name");
        }
        if (driver.matchTable() == null) {
            // __auxiliary_driver_register: a driver without an id_table is -EINVAL
            throw new ErrnoException(Errno.EINVAL, "driver_register: driver '" + name + "' has no ID table");
        }
        lock.lock();
        try {
            for (Driver d : drivers) {
                if (d == driver || d.name().equals(driver.name())) {
                    throw new ErrnoException(Errno.EEXIST, "a driver named '" + driver.name() + "' is already registered");
                }
            }
            drivers.add(driver);
            tracer.emit(TraceKind.DRIVER, driver.name(), -1, 0, "registered");
            for (Device dev : List.copyOf(devices.values())) {
                if (dev.isPresent() && dev.driver().isEmpty()) {
                    tryProbe(dev, driver);
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /** Unbinds the driver from every device it drives and forgets it ({@code driver_unregister}). */
    public void unregisterDriver(Driver driver) {
        if (driver == null) {
            throw new ErrnoException(Errno.EINVAL, "driver_unregister: the driver is null");
        }
        lock.lock();
        try {
            if (!drivers.contains(driver)) {
                throw new ErrnoException(Errno.ENODEV, "driver '" + (driver == null ? null : driver.name()) + "' is not registered");
            }
            List<Device> bound = devices.values().stream().filter(d -> d.driver().orElse(null) == driver).toList();
            for (int i = bound.size() - 1; i >= 0; i--) {
                unbindLocked(bound.get(i));
            }
            drivers.remove(driver);
            tracer.emit(TraceKind.DRIVER, driver.name(), -1, 0, "unregistered");
        } finally {
            lock.unlock();
        }
    }

    /**
     * Binds {@code device} to {@code driver} by hand ({@code echo BDF > /sys/bus/pci/drivers/NAME/bind},
     * {@code bind_store} in {@code drivers/base/bus.c}): the driver must match the device, by its ID table or by the
     * device's {@code driver_override}.
     *
     * @throws ErrnoException {@code ENODEV} for a device not on its bus, a driver not registered, a driver that does
     *                        not match ({@code driver_match_device}, an override naming another driver included);
     *                        {@code EBUSY} if the device is bound already ({@code __driver_probe_device}); the
     *                        probe's own errno when it fails ({@code EIO} for an exception without one)
     */
    public void bind(Device device, Driver driver) {
        ErrnoException.requireNonNull(device, "bind: device");
        ErrnoException.requireNonNull(driver, "bind: driver");
        lock.lock();
        try {
            if (lookup(device.name()) != device) {
                throw new ErrnoException(Errno.ENODEV, "device " + device.name() + " is not on its bus");
            }
            if (!drivers.contains(driver)) {
                throw new ErrnoException(Errno.ENODEV, "driver '" + driver.name() + "' is not registered");
            }
            if (match(device, driver).isEmpty()) {
                throw new ErrnoException(Errno.ENODEV, "driver '" + driver.name() + "' does not match " + device.name()
                        + device.driverOverride().map(o -> " (driver_override is '" + o + "')").orElse(""));
            }
            if (device.driver().isPresent()) {
                throw new ErrnoException(Errno.EBUSY, device.name() + " is already bound to " + device.driver().get().name());
            }
            Errno failed = probe(device, driver);
            if (failed != null) {
                throw new ErrnoException(failed, "probe of " + device.name() + " by '" + driver.name() + "' failed with "
                        + failed);
            }
        } finally {
            lock.unlock();
        }
    }

    /** Unbinds {@code device} from its driver by hand ({@code echo BDF > .../unbind}); no-op if unbound. */
    public void unbind(Device device) {
        ErrnoException.requireNonNull(device, "device_release_driver: device");
        lock.lock();
        try {
            unbindLocked(device);
        } finally {
            lock.unlock();
        }
    }

    /**
     * Unbinds {@code device} from {@code driver} ({@code echo BDF > /sys/bus/pci/drivers/NAME/unbind},
     * {@code unbind_store} in {@code drivers/base/bus.c}): the driver's remove runs, then devres is released.
     *
     * @throws ErrnoException {@code ENODEV} for a device not on its bus or not bound to {@code driver}
     */
    public void unbind(Device device, Driver driver) {
        ErrnoException.requireNonNull(device, "unbind: device");
        ErrnoException.requireNonNull(driver, "unbind: driver");
        lock.lock();
        try {
            if (lookup(device.name()) != device) {
                throw new ErrnoException(Errno.ENODEV, "device " + device.name() + " is not on its bus");
            }
            if (device.driver().orElse(null) != driver) {
                throw new ErrnoException(Errno.ENODEV, device.name() + " is not bound to '" + driver.name() + "' but to "
                        + device.driver().map(d -> "'" + d.name() + "'").orElse("no driver"));
            }
            unbindLocked(device);
        } finally {
            lock.unlock();
        }
    }

    /**
     * Sets or clears the device's {@code driver_override} ({@code driver_set_override} in
     * {@code drivers/base/driver.c}): from then on only the driver of that name binds to it, whatever its ID table
     * says, and every other driver is refused. Like the kernel's store, it neither unbinds the driver bound now nor
     * probes: {@link #unbind(Device, Driver)} and {@link #reprobe} do that (as {@code driverctl set-override} does).
     *
     * @param name the driver's name, up to the first newline; empty or a lone newline clears the override
     * @throws ErrnoException {@code EINVAL} for a null device or name, a name of {@code PAGE_SIZE - 1} (4095) bytes
     *                        or more, or a device on
     *                        a bus without {@code driver_override} (the auxiliary bus); {@code ENODEV} for a device
     *                        not on its bus
     */
    public void setDriverOverride(Device device, String name) {
        ErrnoException.requireNonNull(device, "driver_override: device");
        ErrnoException.requireNonNull(name, "driver_override: driver name");
        if (name.length() >= OVERRIDE_MAX) {
            throw new ErrnoException(Errno.EINVAL, "driver_override of " + device.name() + ": " + name.length()
                    + " bytes, at most " + (OVERRIDE_MAX - 1) + " fit");
        }
        if (device.bus() != BusType.PCI) {
            throw new ErrnoException(Errno.EINVAL, "driver_override of " + device.name() + ": the "
                    + device.bus().name().toLowerCase() + " bus has no driver_override");
        }
        String value = name;
        int nl = value.indexOf('\n');
        if (nl >= 0) {
            value = value.substring(0, nl);
        }
        lock.lock();
        try {
            if (lookup(device.name()) != device) {
                throw new ErrnoException(Errno.ENODEV, "device " + device.name() + " is not on its bus");
            }
            device.setDriverOverride(value.isEmpty() ? null : value);
            tracer.emit(TraceKind.DRIVER, device.name(), -1, 0, "driver_override=" + (value.isEmpty() ? "(null)" : value));
        } finally {
            lock.unlock();
        }
    }

    /**
     * Probes an unbound device against the registered drivers again ({@code echo BDF > /sys/bus/pci/drivers_probe},
     * {@code bus_rescan_devices_helper}): the first that matches binds; a bound device, or one no driver matches,
     * stays as it is.
     *
     * @return whether the device is bound afterwards
     * @throws ErrnoException {@code ENODEV} for a device not on its bus
     */
    public boolean reprobe(Device device) {
        ErrnoException.requireNonNull(device, "drivers_probe: device");
        lock.lock();
        try {
            if (lookup(device.name()) != device) {
                throw new ErrnoException(Errno.ENODEV, "device " + device.name() + " is not on its bus");
            }
            if (device.driver().isEmpty()) {
                for (Driver d : drivers) {
                    if (tryProbe(device, d)) {
                        break;
                    }
                }
            }
            return device.driver().isPresent();
        } finally {
            lock.unlock();
        }
    }

    /** Calls {@code listener} after each unbind, once the driver's remove and devres release have run. */
    public AutoCloseable onUnbind(Consumer<Device> listener) {
        unbindListeners.add(ErrnoException.requireNonNull(listener, "unbind listener"));
        return () -> unbindListeners.remove(listener);
    }

    /** The devices on all buses, in the order they were added. */
    public List<Device> devices() {
        lock.lock();
        try {
            return List.copyOf(devices.values());
        } finally {
            lock.unlock();
        }
    }

    /** The registered drivers, in registration order. */
    public List<Driver> drivers() {
        lock.lock();
        try {
            return List.copyOf(drivers);
        } finally {
            lock.unlock();
        }
    }

    /** The device named {@code name}, if on a bus. */
    public Optional<Device> findDevice(String name) {
        ErrnoException.requireNonNull(name, "device name");
        lock.lock();
        try {
            return Optional.ofNullable(lookup(name));
        } finally {
            lock.unlock();
        }
    }

    /** The device named {@code name} or null ({@code bus_find_device_by_name}); the caller holds the lock. */
    private Device lookup(String name) {
        lookupSteps++;
        return devices.get(name);
    }

    /** Devices examined by name lookups so far (each add, remove, bind and find looks one name up). */
    long lookupSteps() {
        lock.lock();
        try {
            return lookupSteps;
        } finally {
            lock.unlock();
        }
    }

    /** The devices {@code driver} is bound to. */
    public List<Device> boundTo(Driver driver) {
        ErrnoException.requireNonNull(driver, "driver");
        return devices().stream().filter(d -> d.driver().orElse(null) == driver).toList();
    }

    /**
     * {@code pci_match_device} with {@code driver_override}: an override naming another driver matches nothing; the
     * driver it names matches by its ID table, else by {@code pci_device_id_any}.
     */
    private static Optional<MatchEntry> match(Device device, Driver driver) {
        String override = device.driverOverride().orElse(null);
        if (override != null && !override.equals(driver.name())) {
            return Optional.empty();
        }
        Optional<MatchEntry> row = driver.matchTable().match(device);
        return row.isEmpty() && override != null ? Optional.of(PCI_ANY) : row;
    }

    private boolean tryProbe(Device device, Driver driver) {
        return probe(device, driver) == null;
    }

    /**
     * Probes {@code device} with {@code driver}: null when bound, else the probe's errno, which a bind by hand
     * returns ({@code device_driver_attach} since Linux 5.14 flows the probe's code to {@code bind_store}):
     * an {@link ErrnoException}'s own, {@code EINVAL} for a probe that returned no binding, {@code EIO} for any
     * other exception (a driver bug); {@code ENODEV} when the driver no longer matches.
     */
    private Errno probe(Device device, Driver driver) {
        Optional<MatchEntry> match = match(device, driver);
        if (match.isEmpty()) {
            return Errno.ENODEV;
        }
        BoundDevice bound;
        try {
            bound = driver.probe(device, match.get());
            if (bound == null) {
                throw new ErrnoException(Errno.EINVAL, "probe returned no binding");
            }
        } catch (Exception | LinkageError e) {
            LOG.warn("{}: probe by driver '{}' failed: {}", device.name(), driver.name(), e.toString(), e);
            device.devres().releaseAll();
            tracer.emit(TraceKind.PROBE_FAILED, device.name(), -1, 0, driver.name() + ": " + e);
            notifyUnbound(device);
            return e instanceof ErrnoException errno ? errno.errno() : Errno.EIO;
        }
        device.bindState(driver, bound);
        tracer.emit(TraceKind.BIND, device.name(), -1, 0, driver.name());
        return null;
    }

    private void unbindLocked(Device device) {
        Driver driver = device.driver().orElse(null);
        if (driver == null) {
            return;
        }
        try {
            device.binding().remove();
        } catch (RuntimeException | LinkageError e) {
            LOG.error("{}: remove of driver '{}' threw", device.name(), driver.name(), e);
        }
        device.devres().releaseAll();
        device.bindState(null, null);
        tracer.emit(TraceKind.UNBIND, device.name(), -1, 0, driver.name());
        notifyUnbound(device);
    }

    private void notifyUnbound(Device device) {
        for (Consumer<Device> l : unbindListeners) {
            try {
                l.accept(device);
            } catch (RuntimeException e) {
                LOG.error("{}: unbind listener failed", device.name(), e);
            }
        }
    }
}
