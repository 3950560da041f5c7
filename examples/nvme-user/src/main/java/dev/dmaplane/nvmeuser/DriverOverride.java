package dev.dmaplane.nvmeuser;

import dev.dmaplane.device.Device;
import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.Vfio;

/**
 * Handing a function to vfio-pci and back as {@code driverctl set-override} and {@code unset-override} do, through
 * the PCI {@code driver_override} attribute ({@code Documentation/ABI/testing/sysfs-bus-pci}): unbind the driver it
 * has, set the override, reprobe; at the end unbind and clear the override.
 */
final class DriverOverride {
    private DriverOverride() {
    }

    /** {@code driverctl set-override BDF vfio-pci}: whether this call bound it (and so unbinds it at close). */
    static boolean bindVfio(Machine machine, PciFunction fn) {
        DeviceCore core = machine.devices();
        Vfio vfio = Vfio.of(machine);
        if (core.drivers().stream().noneMatch(d -> d.name().equals(vfio.driver().name()))) {
            core.registerDriver(vfio.driver()); // a plain class path; in OSGi the vfio bundle registers it
        }
        String vfioPci = vfio.driver().name();
        if (fn.driver().map(d -> d.name().equals(vfioPci)).orElse(false)) {
            return false;
        }
        if (fn.driver().isPresent()) {
            core.unbind(fn);
        }
        core.setDriverOverride(fn, vfioPci);
        if (!core.reprobe(fn)) {
            core.setDriverOverride(fn, "");
            throw new ErrnoException(Errno.ENODEV, "nvme: vfio-pci did not bind " + fn.bdf());
        }
        return true;
    }

    /** {@code driverctl unset-override BDF} for a function {@link #bindVfio} bound; nothing for one gone. */
    static void unbindVfio(Machine machine, Device fn) {
        if (!fn.isPresent()) {
            return;
        }
        machine.devices().unbind(fn);
        machine.devices().setDriverOverride(fn, "");
    }
}
