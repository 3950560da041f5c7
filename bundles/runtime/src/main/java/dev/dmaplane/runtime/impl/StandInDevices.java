package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.BusType;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.device.MatchEntry;

import java.util.List;

/**
 * Stand-in PCI functions for a default machine that boots without devices.
 *
 * <p>TEMPORARY: the framework's PCI topology ({@code dev.dmaplane.pci}, {@code Machine.pci()}) will give the
 * default machine real {@code PciFunction}s (a GPU, RDMA HCAs, an NVMe). Until it lands, the runtime puts two
 * functions on the bus so that drivers have something to bind to: a 3D controller (class 0x030200) and an
 * InfiniBand controller (class 0x020700). They match PCI ID rows like real functions, have no config space and no
 * DMA API ({@link Device#dma()} fails with {@code ENODEV}). {@link MachineComponent} adds them only when the
 * booted machine has no device at all, so they vanish by themselves once the topology is there.
 */
final class StandInDevices {
    private StandInDevices() {
    }

    /** A PCI function known only by its IDs. */
    static final class Function extends Device {
        private final int vendor;
        private final int deviceId;
        private final int classCode;
        private final String description;

        Function(String bdf, int vendor, int deviceId, int classCode, String description) {
            super(bdf, null);
            this.vendor = vendor;
            this.deviceId = deviceId;
            this.classCode = classCode;
            this.description = description;
        }

        @Override
        public BusType bus() {
            return BusType.PCI;
        }

        @Override
        public boolean matches(MatchEntry entry) {
            return entry instanceof MatchEntry.Pci p && p.matches(vendor, deviceId, vendor, deviceId, classCode);
        }

        /** {@code vvvv:dddd class cccccc description}, as {@code lspci -nn} would print it. */
        String describe() {
            return String.format("[%04x:%04x] class %06x %s (stand-in)", vendor, deviceId, classCode, description);
        }
    }

    /** Puts the stand-in functions on the bus of {@code core}; returns them. */
    static List<Function> populate(DeviceCore core) {
        List<Function> fns = List.of(
                new Function("0000:01:00.0", 0x10de, 0x2330, 0x030200, "3D controller"),
                new Function("0000:02:00.0", 0x15b3, 0x101b, 0x020700, "InfiniBand controller"));
        for (Function f : fns) {
            core.addDevice(f, null);
        }
        return fns;
    }
}
