package dev.dmaplane.device;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.testing.TestDevice;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code driver_override} as {@code Documentation/ABI/testing/sysfs-bus-pci} describes it and
 * {@code driver_set_override} ({@code drivers/base/driver.c}) and {@code pci_match_device}
 * ({@code drivers/pci/pci-driver.c}) implement it, with the explicit {@code bind}, {@code unbind} and
 * {@code drivers_probe} stores of {@code drivers/base/bus.c} ({@code bind_store}, {@code unbind_store},
 * {@code bus_rescan_devices_helper}): the errnos each answers.
 */
class DriverOverrideTest {
    private final DeviceCore core = new DeviceCore(new Tracer());
    private final List<String> log = new ArrayList<>();
    private final TestDevice nvme = new TestDevice("0000:06:00.0", 0x1da0, 3, 0x010802);
    private final Driver nvmeDriver = driver("nvme", MatchTable.of(MatchEntry.Pci.ofClass(0x010802, 0xffffff)));
    /** A driver with an ID table no device matches, as vfio-pci's is empty until new_id or an override. */
    private final Driver vfio = driver("vfio-pci", MatchTable.of(MatchEntry.Pci.of(0xffff, 0xffff)));

    private Driver driver(String name, MatchTable table) {
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
                log.add(name + ":probe:" + match);
                return () -> log.add(name + ":remove");
            }
        };
    }

    private static void assertErrno(Errno errno, Executable call) {
        ErrnoException e = assertThrows(ErrnoException.class, call);
        assertEquals(errno, e.errno(), e.getMessage());
    }

    /**
     * A bind by hand answers the probe's own errno (bind_store through device_driver_attach, since Linux 5.14's
     * "driver core: Flow the return code from ->probe() through to sysfs bind"), EIO for a probe that failed without
     * one; the device stays unbound and a later bind with a working probe succeeds.
     */
    @Test
    void aBindByHandAnswersTheProbesErrno() {
        core.addDevice(nvme, null);
        List<RuntimeException> failures = new ArrayList<>(List.of(
                new ErrnoException(Errno.ENOMEM, "no memory for the admin queue"),
                new IllegalStateException("a driver bug")));
        Driver flaky = new Driver() {
            @Override
            public String name() {
                return "flaky";
            }

            @Override
            public MatchTable matchTable() {
                return MatchTable.of(MatchEntry.Pci.of(0xffff, 0xffff));
            }

            @Override
            public BoundDevice probe(Device device, MatchEntry match) {
                if (!failures.isEmpty()) {
                    throw failures.removeFirst();
                }
                return () -> log.add("flaky:remove");
            }
        };
        core.registerDriver(flaky);
        core.setDriverOverride(nvme, "flaky");
        assertErrno(Errno.ENOMEM, () -> core.bind(nvme, flaky));
        assertTrue(nvme.driver().isEmpty());
        assertErrno(Errno.EIO, () -> core.bind(nvme, flaky));
        core.bind(nvme, flaky);
        assertSame(flaky, nvme.driver().orElseThrow());
    }

    @Test
    void anOverrideBindsOnlyTheNamedDriverWhateverTheIdTablesSay() {
        core.addDevice(nvme, null);
        core.registerDriver(nvmeDriver);
        core.registerDriver(vfio);
        assertSame(nvmeDriver, nvme.driver().orElseThrow());

        core.setDriverOverride(nvme, "vfio-pci\n");

        assertEquals(Optional.of("vfio-pci"), nvme.driverOverride(), "the store stops at the newline");
        assertSame(nvmeDriver, nvme.driver().orElseThrow(), "setting the override unbinds nothing");
        core.unbind(nvme, nvmeDriver);
        assertTrue(core.reprobe(nvme), "drivers_probe binds the overriding driver");
        assertSame(vfio, nvme.driver().orElseThrow());
        assertEquals("vfio-pci:probe:" + MatchEntry.Pci.ofClass(0, 0), log.get(log.size() - 1),
                "its table does not match: it gets pci_device_id_any");
        core.unbind(nvme, vfio);
        assertErrno(Errno.ENODEV, () -> core.bind(nvme, nvmeDriver));
        assertTrue(nvme.driver().isEmpty());
    }

    @Test
    void anOverrideAppliesWhenADeviceOrADriverArrives() {
        core.registerDriver(nvmeDriver);
        core.addDevice(nvme, null);
        core.setDriverOverride(nvme, "vfio-pci");
        core.unbind(nvme);
        assertFalse(core.reprobe(nvme), "the only driver allowed is not registered yet");

        core.registerDriver(vfio);

        assertSame(vfio, nvme.driver().orElseThrow(), "driver_register probes the overridden device");
        core.unregisterDriver(vfio);
        assertTrue(nvme.driver().isEmpty(), "nvme may not take it while the override stands");
        TestDevice second = new TestDevice("0000:07:00.0", 0x1da0, 3, 0x010802);
        core.addDevice(second, null);
        assertSame(nvmeDriver, second.driver().orElseThrow(), "an override is per device");
    }

    @Test
    void clearingTheOverrideLetsTheIdTablesMatchAgain() {
        core.addDevice(nvme, null);
        core.setDriverOverride(nvme, "vfio-pci");
        core.registerDriver(nvmeDriver);
        assertTrue(nvme.driver().isEmpty());

        core.setDriverOverride(nvme, "\n");

        assertEquals(Optional.empty(), nvme.driverOverride());
        assertTrue(core.reprobe(nvme));
        assertSame(nvmeDriver, nvme.driver().orElseThrow());
        core.setDriverOverride(nvme, "x");
        core.setDriverOverride(nvme, "");
        assertEquals(Optional.empty(), nvme.driverOverride());
        assertErrno(Errno.EINVAL, () -> core.setDriverOverride(nvme, null));
    }

    @Test
    void bindAndUnbindAnswerAsBindStoreAndUnbindStore() {
        core.addDevice(nvme, null);
        core.registerDriver(nvmeDriver);
        core.registerDriver(vfio);
        core.setDriverOverride(nvme, "vfio-pci");

        assertErrno(Errno.EBUSY, () -> core.bind(nvme, vfio));
        assertErrno(Errno.ENODEV, () -> core.unbind(nvme, vfio));
        core.unbind(nvme, nvmeDriver);
        assertErrno(Errno.ENODEV, () -> core.unbind(nvme, nvmeDriver));
        core.bind(nvme, vfio);
        assertSame(vfio, nvme.driver().orElseThrow());
        assertEquals(List.of("nvme:probe:" + MatchEntry.Pci.ofClass(0x010802, 0xffffff), "nvme:remove",
                "vfio-pci:probe:" + MatchEntry.Pci.ofClass(0, 0)), log);

        TestDevice gone = new TestDevice("0000:08:00.0", 0x1da0, 3, 0x010802);
        assertErrno(Errno.ENODEV, () -> core.bind(gone, vfio));
        assertErrno(Errno.ENODEV, () -> core.unbind(gone, vfio));
        assertErrno(Errno.ENODEV, () -> core.reprobe(gone));
        assertErrno(Errno.ENODEV, () -> core.setDriverOverride(gone, "vfio-pci"));
        assertErrno(Errno.ENODEV, () -> core.bind(nvme, driver("unregistered", MatchTable.of(MatchEntry.Pci.of(1, 1)))));
    }

    @Test
    void anOverrideOfAPageOrMoreAndOneOnTheAuxiliaryBusAreEinval() {
        core.addDevice(nvme, null);
        ErrnoException tooLong = assertThrows(ErrnoException.class,
                () -> core.setDriverOverride(nvme, "v".repeat(DeviceCore.OVERRIDE_MAX)));
        assertEquals(Errno.EINVAL, tooLong.errno());
        assertTrue(tooLong.getMessage().contains("4095 bytes"), tooLong.getMessage());
        core.setDriverOverride(nvme, "v".repeat(DeviceCore.OVERRIDE_MAX - 1));
        assertEquals(DeviceCore.OVERRIDE_MAX - 1, nvme.driverOverride().orElseThrow().length());

        Driver parent = new Driver() {
            @Override
            public String name() {
                return "v".repeat(DeviceCore.OVERRIDE_MAX - 1);
            }

            @Override
            public MatchTable matchTable() {
                return MatchTable.of(MatchEntry.Pci.of(0xffff, 0xffff));
            }

            @Override
            public BoundDevice probe(Device device, MatchEntry match) {
                core.addAuxDevice(device, "mod", "dev", 0, null);
                return () -> { };
            }
        };
        core.registerDriver(parent);
        AuxDevice aux = (AuxDevice) nvme.children().getFirst();
        assertErrno(Errno.EINVAL, () -> core.setDriverOverride(aux, "x"));
        assertErrno(Errno.EINVAL, () -> core.setDriverOverride(null, "x"));
    }
}
