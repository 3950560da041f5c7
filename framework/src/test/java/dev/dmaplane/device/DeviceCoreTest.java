package dev.dmaplane.device;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.testing.TestDevice;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Binding rules of the driver core, following Documentation/driver-api/driver-model/binding.rst and
 * drivers/base/dd.c (probe failure leaves the device unbound; devres released after remove and on probe failure),
 * and Documentation/driver-api/auxiliary_bus.rst.
 */
class DeviceCoreTest {
    private final Tracer tracer = new Tracer();
    private final DeviceCore core = new DeviceCore(tracer);
    private final List<String> log = new ArrayList<>();

    private Driver driver(String name, MatchTable table, boolean failOn03) {
        return new Driver() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public MatchTable matchTable() {
                return table;
            }

            @Override
            public BoundDevice probe(Device device, MatchEntry match) {
                log.add(name + ":probe:" + device.name());
                device.devres().add("first", () -> log.add(name + ":devres1:" + device.name()));
                device.devres().add("second", () -> log.add(name + ":devres2:" + device.name()));
                if (failOn03 && device.name().endsWith("03:00.0")) {
                    throw new IllegalStateException("firmware did not load");
                }
                return () -> log.add(name + ":remove:" + device.name());
            }
        };
    }

    @Test
    void driverProbesMatchingDevicesAndRemoveRunsBeforeDevres() {
        TestDevice gpu = new TestDevice("0000:03:00.0", 0x1da0, 1, 0x030200);
        TestDevice nic = new TestDevice("0000:04:00.0", 0x1da0, 2, 0x020000);
        core.addDevice(gpu, null);
        core.addDevice(nic, null);
        Driver d = driver("gpu", MatchTable.of(MatchEntry.Pci.ofClass(0x030000, 0xff0000)), false);
        core.registerDriver(d);
        assertEquals(List.of("gpu:probe:0000:03:00.0"), log);
        assertSame(d, gpu.driver().orElseThrow());
        assertTrue(nic.driver().isEmpty());
        core.unregisterDriver(d);
        assertEquals(List.of("gpu:probe:0000:03:00.0", "gpu:remove:0000:03:00.0",
                "gpu:devres2:0000:03:00.0", "gpu:devres1:0000:03:00.0"), log);
        assertTrue(gpu.driver().isEmpty());
        assertEquals(0, gpu.devres().size());
        assertFalse(tracer.select(e -> e.kind() == TraceKind.UNBIND).isEmpty());
    }

    @Test
    void failedProbeLeavesThatDeviceUnboundAndOthersBound() {
        TestDevice a = new TestDevice("0000:03:00.0", 0x1da0, 1, 0x030200);
        TestDevice b = new TestDevice("0000:05:00.0", 0x1da0, 1, 0x030200);
        core.addDevice(a, null);
        core.addDevice(b, null);
        core.registerDriver(driver("gpu", MatchTable.of(MatchEntry.Pci.of(0x1da0, 1)), true));
        assertTrue(a.driver().isEmpty(), "failed probe leaves the device unbound");
        assertEquals(0, a.devres().size(), "devres of a failed probe is released");
        assertTrue(log.contains("gpu:devres1:0000:03:00.0"));
        assertTrue(b.driver().isPresent(), "the other device still binds");
        assertEquals(1, tracer.select(e -> e.kind() == TraceKind.PROBE_FAILED).size());
    }

    @Test
    void deviceAddedLaterIsProbedAndHotUnplugUnbinds() {
        core.registerDriver(driver("nvme", MatchTable.of(MatchEntry.Pci.ofClass(0x010802, 0xffffff)), false));
        TestDevice nvme = new TestDevice("0000:06:00.0", 0x1da0, 3, 0x010802);
        core.addDevice(nvme, null);
        assertTrue(nvme.driver().isPresent());
        core.removeDevice(nvme);
        assertFalse(nvme.isPresent());
        assertTrue(log.contains("nvme:remove:0000:06:00.0"));
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, nvme::dma).errno());
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> core.removeDevice(nvme)).errno());
    }

    @Test
    void auxiliaryChildrenBindByNameAndGoWithTheirParent() {
        AtomicReference<AuxDevice> child = new AtomicReference<>();
        Driver parent = new Driver() {
            @Override
            public String name() {
                return "core";
            }

            @Override
            public MatchTable matchTable() {
                return MatchTable.of(MatchEntry.Pci.of(0x1da0, 2));
            }

            @Override
            public BoundDevice probe(Device device, MatchEntry match) {
                child.set(core.addAuxDevice(device, "dmaplane_hca", "rdma", 0, "port-data"));
                return () -> log.add("core:remove");
            }
        };
        Driver rdma = new Driver() {
            @Override
            public String name() {
                return "rdma";
            }

            @Override
            public MatchTable matchTable() {
                return MatchTable.of(MatchEntry.Auxiliary.of("dmaplane_hca.rdma"));
            }

            @Override
            public BoundDevice probe(Device device, MatchEntry match) {
                log.add("rdma:probe:" + device.name() + ":" + ((AuxDevice) device).platformData(String.class));
                return () -> log.add("rdma:remove");
            }
        };
        core.registerDriver(rdma);
        TestDevice hca = new TestDevice("0000:04:00.0", 0x1da0, 2, 0x020000);
        core.addDevice(hca, null);
        core.registerDriver(parent);
        assertEquals("dmaplane_hca.rdma.0", child.get().name());
        assertEquals(List.of("rdma:probe:dmaplane_hca.rdma.0:port-data"), log);
        assertEquals(List.of(child.get()), hca.children());
        core.unregisterDriver(parent);
        assertEquals(List.of("rdma:probe:dmaplane_hca.rdma.0:port-data", "core:remove", "rdma:remove"), log);
        assertFalse(child.get().isPresent());
        assertTrue(core.findDevice("dmaplane_hca.rdma.0").isEmpty());
    }

    @Test
    void manualBindAndBadInput() {
        TestDevice gpu = new TestDevice("0000:03:00.0", 0x1da0, 1, 0x030200);
        core.addDevice(gpu, null);
        Driver d = driver("gpu", MatchTable.of(MatchEntry.Pci.of(0x1da0, 1)), false);
        Driver other = driver("nvme", MatchTable.of(MatchEntry.Pci.of(0x1da0, 3)), false);
        core.registerDriver(d);
        core.registerDriver(other);
        assertEquals(Errno.EEXIST, assertThrows(ErrnoException.class,
                () -> core.registerDriver(driver("gpu", MatchTable.of(MatchEntry.Pci.of(1, 1)), false))).errno());
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, () -> core.bind(gpu, d)).errno());
        core.unbind(gpu);
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> core.bind(gpu, other)).errno());
        core.bind(gpu, d);
        assertSame(d, gpu.driver().orElseThrow());
        assertEquals(Errno.EEXIST, assertThrows(ErrnoException.class, () -> core.addDevice(gpu, null)).errno());
        ErrnoException e = assertThrows(ErrnoException.class, () -> MatchEntry.Pci.of(0x10000, 1));
        assertTrue(e.getMessage().contains("0x10000"));
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> MatchEntry.Auxiliary.of("nodot")).errno());
    }

    /**
     * Adding and removing devices looks each name up once ({@code bus_find_device_by_name} over the bus's klist is
     * linear in the kernel; a machine of thousands of PCI functions needs a keyed lookup): the steps grow linearly.
     */
    @Test
    void deviceLookupStepsGrowLinearlyWithTheDevices() {
        long small = addAndRemove(500);
        long large = addAndRemove(1000);
        assertTrue(large <= 2 * small, "500 devices: " + small + " lookup steps, 1000 devices: " + large);
    }

    private static long addAndRemove(int n) {
        DeviceCore c = new DeviceCore(new Tracer());
        List<TestDevice> devs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            TestDevice d = new TestDevice(String.format("0000:%02x:%02x.0", i / 32, i % 32), 0x1da0, 2, 0x020000);
            c.addDevice(d, null);
            devs.add(d);
        }
        assertTrue(c.findDevice(devs.get(n - 1).name()).isPresent());
        for (int i = n - 1; i >= 0; i--) {
            c.removeDevice(devs.get(i));
        }
        assertTrue(c.devices().isEmpty());
        return c.lookupSteps();
    }

    /**
     * Bad arguments are errnos, never a NullPointerException: {@code auxiliary_device_init} answers a NULL parent,
     * {@code __auxiliary_driver_register} a driver without an {@code id_table}, with -EINVAL.
     */
    @Test
    void nullPartsAreEinvalNamingWhatIsMissing() {
        ErrnoException orphan = assertThrows(ErrnoException.class, () -> core.addAuxDevice(null, "mlx5_core", "eth", 0, null));
        assertEquals(Errno.EINVAL, orphan.errno());
        assertTrue(orphan.getMessage().contains("mlx5_core.eth.0 has no parent"), orphan.getMessage());
        ErrnoException noTable = assertThrows(ErrnoException.class, () -> core.registerDriver(driver("tableless", null, false)));
        assertEquals(Errno.EINVAL, noTable.errno());
        assertTrue(noTable.getMessage().contains("'tableless' has no ID table"), noTable.getMessage());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> core.registerDriver(null)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> core.unregisterDriver(null)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> core.registerDriver(driver(" ", MatchTable.of(), false))).errno());
        assertTrue(core.drivers().isEmpty(), "nothing was registered");
    }

    /** {@code device_del} notifies {@code BUS_NOTIFY_REMOVED_DEVICE} after the driver is released ({@code drivers/base/core.c}). */
    @Test
    void removeListenersAreToldAfterTheDriverIsUnboundEachOnItsOwn() {
        TestDevice gpu = new TestDevice("0000:03:00.0", 0x1da0, 1, 0x030200);
        core.addDevice(gpu, null);
        core.registerDriver(driver("gpu", MatchTable.of(MatchEntry.Pci.of(0x1da0, 1)), false));
        gpu.addRemoveListener(() -> {
            throw new IllegalStateException("a broken listener");
        });
        gpu.addRemoveListener(() -> log.add("removed, present=" + gpu.isPresent()));
        Runnable stop = gpu.addRemoveListener(() -> log.add("stopped listener"));
        stop.run();

        core.removeDevice(gpu);

        assertEquals(List.of("gpu:probe:0000:03:00.0", "gpu:remove:0000:03:00.0", "gpu:devres2:0000:03:00.0",
                "gpu:devres1:0000:03:00.0", "removed, present=false"), log);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> gpu.addRemoveListener(null)).errno());
    }
}
