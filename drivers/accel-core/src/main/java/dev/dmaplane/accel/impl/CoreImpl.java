package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.AccelDevice;
import dev.dmaplane.accel.spi.AccelDeviceHandle;
import dev.dmaplane.accel.spi.AccelProvider;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;

/** The device registry behind {@link dev.dmaplane.accel.AccelCore} ({@code drm_accel.c}'s minor table). */
public final class CoreImpl {
    private final Machine machine;
    private final Map<String, DeviceImpl> devices = new LinkedHashMap<>();

    public CoreImpl(Machine machine) {
        this.machine = Objects.requireNonNull(machine, "machine");
    }

    public AccelDeviceHandle register(AccelProvider provider) {
        ErrnoException.check(provider != null, Errno.EINVAL, "no accelerator provider");
        synchronized (this) {
            String name = null;
            for (int i = 0; name == null; i++) {
                if (!devices.containsKey("accel" + i)) {
                    name = "accel" + i;
                }
            }
            DeviceImpl d = new DeviceImpl(this, machine, name, provider);
            devices.put(name, d);
            return d;
        }
    }

    synchronized void remove(DeviceImpl d) {
        devices.remove(d.name(), d);
    }

    public synchronized List<AccelDevice> devices() {
        return List.copyOf(devices.values());
    }

    public synchronized Optional<AccelDevice> device(String name) {
        return Optional.ofNullable(devices.get(name));
    }

    public AccelContext open(String name) {
        return device(name).orElseThrow(() -> new ErrnoException(Errno.ENODEV, "no accelerator device named " + name)).open();
    }

    public void close() {
        List<DeviceImpl> all;
        synchronized (this) {
            all = new ArrayList<>(devices.values());
        }
        for (int i = all.size() - 1; i >= 0; i--) {
            all.get(i).unregister();
        }
    }
}
