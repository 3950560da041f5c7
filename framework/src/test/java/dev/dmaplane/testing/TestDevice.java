package dev.dmaplane.testing;

import dev.dmaplane.device.BusType;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.MatchEntry;

/** A PCI-like device for unit tests of the driver core and the DMA API without a topology. */
public final class TestDevice extends Device {
    private final int vendor;
    private final int deviceId;
    private final int classCode;
    private volatile boolean busMaster = true;

    public TestDevice(String name, int vendor, int deviceId, int classCode) {
        super(name, null);
        this.vendor = vendor;
        this.deviceId = deviceId;
        this.classCode = classCode;
    }

    @Override
    public BusType bus() {
        return BusType.PCI;
    }

    @Override
    public boolean matches(MatchEntry entry) {
        return entry instanceof MatchEntry.Pci p && p.matches(vendor, deviceId, 0, 0, classCode);
    }

    @Override
    public boolean busMasterEnabled() {
        return busMaster;
    }

    public void setBusMaster(boolean on) {
        busMaster = on;
    }
}
