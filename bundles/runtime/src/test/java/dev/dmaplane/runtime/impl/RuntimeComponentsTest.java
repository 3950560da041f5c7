package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The runtime's components outside OSGi: the binder, the commands and the query service over a real Machine. */
class RuntimeComponentsTest {
    /** Claims 3D controllers and takes one page per device, returned by remove. */
    static final class GpuDriver implements Driver {
        final String name;
        final Machine machine;
        final List<String> removed = new ArrayList<>();

        GpuDriver(String name, Machine machine) {
            this.name = name;
            this.machine = machine;
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public MatchTable matchTable() {
            return MatchTable.of(MatchEntry.Pci.ofClass(0x030200, 0xFFFF00));
        }

        @Override
        public BoundDevice probe(Device device, MatchEntry match) {
            long pfn = machine.memory().allocPages(0);
            return () -> {
                machine.memory().putPage(pfn);
                removed.add(device.name());
            };
        }
    }

    Machine machine;
    DriverBinder binder;

    @BeforeEach
    void boot() {
        machine = MachineComponent.boot(null);
        binder = new DriverBinder(machine);
    }

    @AfterEach
    void close() {
        binder.deactivate();
        machine.close();
    }

    @Test
    void defaultMachineHasTheStandInFunctionsUntilPciLands() {
        List<String> names = machine.devices().devices().stream().map(Device::name).toList();
        assertEquals(List.of("0000:01:00.0", "0000:02:00.0"), names);
    }

    @Test
    void machineFileThatDoesNotExistIsRefused() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> MachineComponent.boot("/nonexistent/machine.yaml"));
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
    }

    @Test
    void bindingADriverServiceProbesAndUnbindingRemoves() {
        GpuDriver d = new GpuDriver("gpu", machine);
        binder.bindDriver(d, null);
        Device gpu = machine.devices().findDevice("0000:01:00.0").orElseThrow();
        assertEquals(d, gpu.driver().orElseThrow());
        assertEquals(1, machine.memory().allocatedFrames());

        binder.unbindDriver(d);
        assertFalse(gpu.driver().isPresent());
        assertEquals(List.of("0000:01:00.0"), d.removed);
        assertEquals(0, machine.memory().allocatedFrames());
        assertTrue(machine.devices().drivers().isEmpty());
    }

    @Test
    void aDuplicateDriverIsRefusedAndItsUnbindLeavesTheFirstAlone() {
        GpuDriver first = new GpuDriver("gpu", machine);
        GpuDriver dup = new GpuDriver("gpu", machine);
        binder.bindDriver(first, null);
        binder.bindDriver(dup, null);
        assertEquals(1, binder.registered().size());
        binder.unbindDriver(dup);
        assertEquals(List.of(first), machine.devices().drivers());
    }

    @Test
    void deactivationUnregistersEveryDriver() {
        GpuDriver d = new GpuDriver("gpu", machine);
        binder.bindDriver(d, null);
        binder.deactivate();
        assertEquals(List.of("0000:01:00.0"), d.removed);
        assertTrue(machine.devices().drivers().isEmpty());
        binder.unbindDriver(d); // SCR still calls unbind after deactivate: a no-op
        binder.bindDriver(new GpuDriver("late", machine), null);
        assertTrue(machine.devices().drivers().isEmpty(), "an inactive binder registers nothing");
    }

    @Test
    void commandsShowDevicesDriversTraceAndMemory() {
        DmaplaneCommands cmds = new DmaplaneCommands(machine, binder);
        assertEquals("no drivers registered", cmds.drivers());
        binder.bindDriver(new GpuDriver("gpu", machine), null);

        String devices = cmds.devices();
        assertTrue(devices.lines().anyMatch(l -> l.startsWith("0000:01:00.0") && l.contains(" gpu ")
                && l.contains("class 030200")), devices);
        assertTrue(devices.lines().anyMatch(l -> l.startsWith("0000:02:00.0") && l.contains(" - ")), devices);

        String drivers = cmds.drivers();
        assertTrue(drivers.contains("gpu  [?]"), drivers);
        assertTrue(drivers.contains("matches: pci class 030200/ffff00"), drivers);
        assertTrue(drivers.contains("bound:   0000:01:00.0"), drivers);

        assertTrue(cmds.trace().lines().anyMatch(l -> l.contains("BIND 0000:01:00.0 gpu")), cmds.trace());
        assertEquals(1, cmds.trace("bind").lines().count());
        assertEquals(1, cmds.trace("1").lines().count());
        assertEquals(1, cmds.trace("5", "BIND").lines().count());
        assertThrows(IllegalArgumentException.class, () -> cmds.trace("nonsense"));

        String memory = cmds.memory();
        assertTrue(memory.contains("RAM        64 GiB (16777216 frames of 4 KiB)"), memory);
        assertTrue(memory.contains("allocated  1 frames (4 KiB)"), memory);
        assertTrue(memory.contains("pinned     0 frames"), memory);
    }

    @Test
    void queryServiceSpeaksOnlyJdkTypes() {
        MachineQuery q = new MachineQuery(machine);
        binder.bindDriver(new GpuDriver("gpu", machine), null);
        @SuppressWarnings("unchecked")
        Map<String, Object> s = (Map<String, Object>) q.apply("status");
        assertEquals(1L, s.get("allocatedFrames"));
        assertEquals(List.of(Map.of("name", "gpu", "bound", List.of("0000:01:00.0"))), s.get("drivers"));
        assertEquals(0L, q.apply("pinnedFrames"));

        long pfn = machine.memory().allocPages(1);
        machine.memory().pinPage(pfn);
        assertEquals(2L, q.apply("pinnedFrames"), "a pinned order-1 block counts both frames");
        machine.memory().unpinPage(pfn);
        machine.memory().putPage(pfn);

        @SuppressWarnings("unchecked")
        List<Map<String, Object>> trace = (List<Map<String, Object>>) q.apply("trace");
        assertTrue(trace.stream().anyMatch(e -> e.get("kind").equals("BIND") && e.get("device").equals("0000:01:00.0")));
        assertThrows(IllegalArgumentException.class, () -> q.apply("what"));
    }
}
