package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.machine.Machine;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * {@code dmatest}: a self test of a device's DMA path, after the kernel's {@code drivers/dma/dmatest.c}. It
 * claims every 3D controller (PCI class 0x0302xx, the GPUs of the default machine); probing one allocates a
 * source and a destination buffer of host pages, fills them with dmatest's patterns, has the device copy random
 * areas from one to the other through its DMA API and checks every byte. The results go to the log as dmatest's
 * summary lines go to dmesg. Remove frees the buffers.
 */
@Component(service = Driver.class, immediate = true)
public final class DmaTestDriver implements Driver {
    /** The driver's name. */
    public static final String NAME = "dmatest";
    /** PCI base class 0x03 (display), subclass 0x02 (3D controller), any programming interface. */
    static final MatchTable TABLE = MatchTable.of(MatchEntry.Pci.ofClass(0x030200, 0xFFFF00));
    /** dmatest's defaults: a 16 KiB test buffer ({@code test_buf_size}), a few iterations. */
    static final DmaTestRun.Parameters DEFAULTS = new DmaTestRun.Parameters(2, 8, 0x646d61L);

    private final Machine machine;
    private final DmaTestRun.Parameters params;
    private final Map<Device, DmaTestRun> runs = new ConcurrentHashMap<>();

    @Activate
    public DmaTestDriver(@Reference Machine machine) {
        this(machine, DEFAULTS);
    }

    DmaTestDriver(Machine machine, DmaTestRun.Parameters params) {
        this.machine = machine;
        this.params = params;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public MatchTable matchTable() {
        return TABLE;
    }

    @Override
    public BoundDevice probe(Device device, MatchEntry match) {
        DmaTestRun run = DmaTestRun.probe(device, machine.memory(), params);
        runs.put(device, run);
        return () -> {
            runs.remove(device);
            run.remove();
        };
    }

    /** The runs of the devices this driver is bound to. */
    List<DmaTestRun> runs() {
        return List.copyOf(runs.values());
    }
}
