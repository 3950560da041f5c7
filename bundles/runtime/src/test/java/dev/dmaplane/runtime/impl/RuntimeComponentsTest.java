package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.ServiceLoader;
import java.util.Set;
import java.util.regex.Pattern;

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

    /** Every function of the embedded default machine, in probe order. */
    static final List<String> DEFAULT_BDFS = List.of("0000:00:01.0", "0000:00:02.0", "0000:00:03.0", "0000:01:00.0",
            "0000:02:00.0", "0000:02:01.0", "0000:03:00.0", "0000:04:00.0", "0000:05:00.0", "0000:06:00.0");
    static final String GPU = "0000:03:00.0";

    @TempDir
    Path tmp;
    Machine machine;
    DriverBinder binder;
    long baseFrames;

    /** The runtime boots without device models; the models on the class path arrive as services would. */
    static Machine bootWithModels() {
        Machine m = MachineComponent.boot(null);
        DeviceModelBinder models = new DeviceModelBinder(m);
        ServiceLoader.load(DeviceModel.class).forEach(model -> models.bindModel(model, null));
        return m;
    }

    @BeforeEach
    void boot() {
        machine = bootWithModels();
        binder = new DriverBinder(machine);
        baseFrames = machine.memory().allocatedFrames();
    }

    @AfterEach
    void close() {
        binder.deactivate();
        machine.close();
    }

    @Test
    void withoutAMachineFileTheDefaultMachineBoots() {
        List<String> added = machine.devices().devices().stream().map(Device::name).toList();
        assertEquals(Set.of(GPU, "0000:06:00.0"), Set.copyOf(added.subList(added.size() - 2, added.size())),
                "the GPU and the NVMe controller came with their models' services, after enumeration");
        assertEquals(DEFAULT_BDFS, added.stream().sorted().toList());
        PciFunction gpu = machine.pci().function(GPU);
        assertEquals(0x030200, gpu.classCode());
        assertEquals(64L << 30, machine.memory().size());
        try (Machine blank = MachineComponent.boot("  ")) {
            assertEquals(DEFAULT_BDFS, blank.pci().functions().stream().map(Device::name).toList(), "blank means default");
        }
    }

    @Test
    void theMachineBootsWithoutModelsAndAModelServiceArrivingIsAHotAdd() {
        try (Machine bare = MachineComponent.boot(null)) {
            PciFunction gpu = bare.pci().function(GPU);
            assertEquals(Optional.of("device model 'gpu' is not loaded"), gpu.absence());
            assertFalse(bare.devices().devices().contains(gpu));
            DriverBinder drivers = new DriverBinder(bare);
            GpuDriver driver = new GpuDriver("gpu-driver", bare);
            drivers.bindDriver(driver, null);
            DeviceModelBinder models = new DeviceModelBinder(bare);
            DeviceModel model = ServiceLoader.load(DeviceModel.class).stream().map(ServiceLoader.Provider::get)
                    .filter(m -> m.name().equals("gpu")).findFirst().orElseThrow();
            models.bindModel(model, null);
            assertEquals(Optional.of(driver), gpu.driver(), "the driver bound on arrival");
            models.unbindModel(model, null);
            assertEquals(List.of(GPU), driver.removed, "the model leaving removed the device");
            assertTrue(gpu.absence().isPresent());
            drivers.deactivate();
        }
    }

    @Test
    void aMachineFileBootsThatMachine() throws Exception {
        Path file = TestMachines.copy(TestMachines.SMALL_GPU, tmp);
        try (Machine small = MachineComponent.boot(file.toString())) {
            assertEquals(1L << 30, small.memory().size());
            assertEquals(List.of("0000:00:01.0", "0000:01:00.0"), small.pci().functions().stream().map(Device::name).toList());
            assertEquals(2, small.iommu().groups().size(), "the root port enforces ACS: port and GPU apart");
            assertEquals(Optional.of("copyengine"), small.pci().function("0000:01:00.0").model());
        }
    }

    @Test
    void machineFileThatDoesNotExistIsRefused() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> MachineComponent.boot("/nonexistent/machine.yaml"));
        assertEquals(Errno.ENOENT, e.errno());
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
    }

    @Test
    void aBadMachineFileIsRefusedNamingTheFileAndTheFault() throws Exception {
        Path file = Files.writeString(tmp.resolve("bad.yaml"), TestMachines.text(TestMachines.SMALL_GPU).replace("memory: 1GiB", "memory: 3MiB"));
        ErrnoException e = assertThrows(ErrnoException.class, () -> MachineComponent.boot(file.toString()));
        assertEquals(Errno.EINVAL, e.errno());
        int line = Files.readAllLines(file).indexOf("memory: 3MiB") + 1;
        assertTrue(e.getMessage().startsWith("EINVAL: " + file.toAbsolutePath() + ":" + line + ":9: memory: '3MiB' "),
                e.getMessage());
    }

    @Test
    void bindingADriverServiceProbesAndUnbindingRemoves() {
        GpuDriver d = new GpuDriver("gpu", machine);
        binder.bindDriver(d, null);
        Device gpu = machine.devices().findDevice(GPU).orElseThrow();
        assertEquals(d, gpu.driver().orElseThrow());
        assertEquals(baseFrames + 1, machine.memory().allocatedFrames());

        binder.unbindDriver(d);
        assertFalse(gpu.driver().isPresent());
        assertEquals(List.of(GPU), d.removed);
        assertEquals(baseFrames, machine.memory().allocatedFrames());
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
        assertEquals(List.of(GPU), d.removed);
        assertTrue(machine.devices().drivers().isEmpty());
        binder.unbindDriver(d); // SCR still calls unbind after deactivate: a no-op
        binder.bindDriver(new GpuDriver("late", machine), null);
        assertTrue(machine.devices().drivers().isEmpty(), "an inactive binder registers nothing");
    }

    @Test
    void commandsShowDevicesDriversTraceAndMemory() {
        DmaplaneCommands cmds = new DmaplaneCommands(machine, binder, DmaBufs.of(machine));
        assertEquals("no drivers registered", cmds.drivers());
        binder.bindDriver(new GpuDriver("gpu", machine), null);

        String devices = cmds.devices();
        assertTrue(devices.lines().anyMatch(l -> l.contains("`- " + GPU) && l.contains(" gpu ")
                && l.contains("[1da0:0001] class 030200 model=gpu")), devices);
        assertTrue(devices.lines().anyMatch(l -> l.contains("`- 0000:06:00.0") && l.contains(" - ")
                && l.contains("class 010802")), devices);

        String drivers = cmds.drivers();
        assertTrue(drivers.contains("gpu  [?]"), drivers);
        assertTrue(drivers.contains("matches: pci class 030200/ffff00"), drivers);
        assertTrue(drivers.contains("bound:   " + GPU), drivers);

        assertTrue(cmds.trace().lines().anyMatch(l -> l.contains("BIND " + GPU + " gpu")), cmds.trace());
        assertTimestamped(cmds.trace());
        assertEquals(1, cmds.trace("bind").lines().count());
        assertEquals(1, cmds.trace("1").lines().count());
        assertEquals(1, cmds.trace("5", "BIND").lines().count());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> cmds.trace("nonsense")).errno());
        assertFalse(machine.tracer().tracesPosts(), "work requests are not traced by default");
        assertEquals("work requests and completions go into the trace ring", cmds.trace("--work-requests", "on"));
        assertTrue(machine.tracer().tracesPosts() && machine.tracer().tracesCompletions());
        assertEquals("work requests and completions stay out of the trace ring",
                cmds.trace("--work-requests", "off"));
        assertFalse(machine.tracer().tracesPosts());
        ErrnoException bad = assertThrows(ErrnoException.class, () -> cmds.trace("--work-requests", "yes"));
        assertEquals(Errno.EINVAL, bad.errno());
        assertTrue(bad.getMessage().contains("'yes' after --work-requests (on or off)"), bad.getMessage());

        String memory = cmds.memory();
        assertTrue(memory.contains("RAM        64 GiB (16777216 frames of 4 KiB)"), memory);
        assertTrue(memory.contains("allocated  " + (baseFrames + 1) + " frames"), memory);
        assertTrue(memory.contains("pinned     0 frames"), memory);
    }

    /**
     * {@code dmaplane:override}, {@code unoverride}, {@code bind} and {@code unbind} do what {@code driverctl
     * set-override}/{@code unset-override}/{@code list-overrides} and the sysfs {@code bind}/{@code unbind} stores do
     * ({@code Documentation/ABI/testing/sysfs-bus-pci} {@code driver_override}, {@code drivers/base/bus.c}), with
     * the kernel's errnos.
     */
    @Test
    void overrideBindAndUnbindCommandsWorkAsDriverctl() {
        DmaplaneCommands cmds = new DmaplaneCommands(machine, binder, DmaBufs.of(machine));
        binder.bindDriver(new GpuDriver("gpu", machine), null);
        binder.bindDriver(new Driver() {
            @Override
            public String name() {
                return "vfio-pci";
            }

            @Override
            public MatchTable matchTable() {
                return MatchTable.of(MatchEntry.Pci.of(0xffff, 0xffff));
            }

            @Override
            public BoundDevice probe(Device device, MatchEntry match) {
                return () -> { };
            }
        }, null);
        assertEquals("no driver overrides", cmds.override());

        assertEquals("0000:06:00.0: driver_override vfio-pci, bound to vfio-pci", cmds.override("06:00.0", "vfio-pci"));
        assertEquals(GPU + ": driver_override vfio-pci, bound to vfio-pci", cmds.override(GPU, "vfio-pci"),
                "the GPU's own driver is unbound first");
        assertEquals("0000:03:00.0 vfio-pci\n0000:06:00.0 vfio-pci", cmds.override());
        assertEquals(GPU + ": driver_override (none), bound to gpu", cmds.unoverride(GPU));

        assertEquals("0000:06:00.0: driver_override vfio-pci, bound to no driver", cmds.unbind("0000:06:00.0"));
        Map<Errno, Executable> refused = Map.of(
                Errno.ENODEV, () -> cmds.unbind("06:00.0"),
                Errno.EINVAL, () -> cmds.bind("zz:00.0", "gpu"));
        refused.forEach((errno, call) -> assertEquals(errno, assertThrows(ErrnoException.class, call).errno()));
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> cmds.bind("06:00.0", "gpu")).errno(),
                "the override refuses every other driver");
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> cmds.bind("06:00.0", "nope")).errno());
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> cmds.bind("42:00.0", "gpu")).errno());
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> cmds.unbind(GPU, "vfio-pci")).errno());
        assertEquals("0000:06:00.0: driver_override vfio-pci, bound to vfio-pci", cmds.bind("06:00.0", "vfio-pci"));
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, () -> cmds.bind("06:00.0", "vfio-pci")).errno());
        assertEquals("0000:06:00.0: driver_override vfio-pci, bound to no driver", cmds.unbind("06:00.0", "vfio-pci"));
        assertEquals("0000:06:00.0: driver_override (none), bound to no driver", cmds.unoverride("06:00.0"));
        assertTrue(cmds.help().contains("dmaplane:override BDF DRV"), cmds.help());
    }

    /**
     * A bad argument to a {@code dmaplane:} command is {@code EINVAL} naming the command and the argument, as the
     * issue 17 rule for every command says (a kernel command's {@code -EINVAL}); found by DmaplaneCommandsFuzzTest,
     * whose inputs {@code lspci ''}, {@code iommu ''}, {@code dmadebug ''} threw IllegalArgumentException and
     * {@code trace 99999999999} NumberFormatException.
     */
    @Test
    void usageErrorsAreEinvalNamingTheArgument() {
        DmaplaneCommands cmds = new DmaplaneCommands(machine, binder, DmaBufs.of(machine));
        Map<String, Executable> bad = Map.of(
                "dmaplane:lspci: bad option ''", () -> cmds.lspci(""),
                "dmaplane:lspci: bad option '-t' before '03:00.0'", () -> cmds.lspci("-t", "03:00.0"),
                "dmaplane:iommu: bad argument ''", () -> cmds.iommu(""),
                "dmaplane:dmadebug: bad option '-x'", () -> cmds.dmadebug("-x"),
                "dmaplane:trace: bad count '99999999999'", () -> cmds.trace("99999999999"),
                "dmaplane:trace: bad count '2147483648'", () -> cmds.trace("5", "2147483648"),
                "dmaplane:trace: unknown trace kind ''", () -> cmds.trace(""));
        bad.forEach((message, call) -> {
            ErrnoException e = assertThrows(ErrnoException.class, call, message);
            assertEquals(Errno.EINVAL, e.errno(), message);
            assertTrue(e.getMessage().contains(message), e.getMessage());
        });
        assertFalse(cmds.trace("2147483647").isEmpty(), "the largest count asks for every event");
    }

    @Test
    void queryServiceSpeaksOnlyJdkTypes() {
        MachineQuery q = new MachineQuery(machine);
        binder.bindDriver(new GpuDriver("gpu", machine), null);
        @SuppressWarnings("unchecked")
        Map<String, Object> s = (Map<String, Object>) q.apply("status");
        assertEquals(baseFrames + 1, s.get("allocatedFrames"));
        assertEquals(List.of(Map.of("name", "gpu", "bound", List.of(GPU))), s.get("drivers"));
        assertEquals(0L, q.apply("pinnedFrames"));

        long pfn = machine.memory().allocPages(1);
        machine.memory().pinPage(pfn);
        assertEquals(2L, q.apply("pinnedFrames"), "a pinned order-1 block counts both frames");
        machine.memory().unpinPage(pfn);
        machine.memory().putPage(pfn);

        @SuppressWarnings("unchecked")
        List<Map<String, Object>> trace = (List<Map<String, Object>>) q.apply("trace");
        assertTrue(trace.stream().anyMatch(e -> e.get("kind").equals("BIND") && e.get("device").equals(GPU)));
        assertThrows(IllegalArgumentException.class, () -> q.apply("what"));
    }

    @Test
    void lspciDrawsTheTreeWithDriversAndListsEveryFunction() {
        DmaplaneCommands cmds = new DmaplaneCommands(machine, binder, DmaBufs.of(machine));
        binder.bindDriver(new GpuDriver("gpu", machine), null);
        String out = cmds.lspci();
        for (String bdf : DEFAULT_BDFS) {
            assertTrue(out.contains(bdf), bdf + " listed:\n" + out);
        }
        assertTrue(out.startsWith("-[0000:00]-+-01.0-[01-04]----00.0-[02-04]--+-00.0-[03]----00.0  3D controller"), out);
        assertTrue(out.lines().anyMatch(l -> l.contains("[1da0:0001] 0000:03:00.0 model=gpu driver=gpu")), out);
        int gpuGroup = machine.iommu().groupOf(machine.pci().function(GPU)).orElseThrow().id();
        assertTrue(out.lines().anyMatch(l -> l.matches("0000:03:00\\.0 +030200 +1da0:0001 +" + gpuGroup + " +gpu")), out);
        assertTrue(out.lines().anyMatch(l -> l.matches("0000:06:00\\.0 +010802 +1da0:0003 +\\d+ +-")), out);
        assertEquals(machine.pci().lspciTree().stripTrailing(), cmds.lspci("-t"));

        String v = cmds.lspci("-v", "03:00.0");
        assertTrue(v.startsWith("0000:03:00.0 3D controller"), v);
        assertTrue(v.contains("IOMMU group: " + gpuGroup) && v.contains("Kernel driver in use: gpu"), v);
        assertEquals(DEFAULT_BDFS.size(), cmds.lspci("-v").lines().filter(l -> l.startsWith("0000:")).count());
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> cmds.lspci("-v", "0000:42:00.0")).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> cmds.lspci("-y")).errno());
    }

    /** {@code dmaplane:lspci -x|-xxx|-xxxx [BDF]} prints config space as pciutils' {@code lspci.c show_hex_dump}. */
    @Test
    void lspciDashXDumpsConfigSpaceAsPciutils() {
        DmaplaneCommands cmds = new DmaplaneCommands(machine, binder, DmaBufs.of(machine));
        String gpu = cmds.lspci("-x", "03:00.0");
        assertTrue(gpu.startsWith("03:00.0 3D controller: Device 1da0:0001\n00: a0 1d 01 00 "), gpu);
        assertEquals(machine.pci().lspciHex(machine.pci().function(GPU), 64), gpu);
        assertEquals(1 + 16 + 1, cmds.lspci("-xxx", "03:00.0").lines().count());
        assertEquals(1 + 256 + 1, cmds.lspci("-xxxx", "03:00.0").lines().count());
        assertEquals(machine.pci().lspciHex(4096), cmds.lspci("-xxxx"));
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> cmds.lspci("-x", "0000:42:00.0")).errno());
        assertEquals(cmds.lspci("-x", "03:00.0"), cmds.lspci("-xx", "03:00.0"), "lspci.c: -xx dumps 64 bytes as -x");
    }

    /**
     * {@code dmaplane:lspci -k} prints {@code ls-kernel.c}'s lines: the bound driver and, as modules, every registered
     * driver whose ID table matches; with {@code -nn}, {@code -D} and {@code -s} as pciutils' {@code lspci.c}.
     */
    @Test
    void lspciDashKNamesTheDriverInUseAndTheModules() {
        DmaplaneCommands cmds = new DmaplaneCommands(machine, binder, DmaBufs.of(machine));
        binder.bindDriver(new GpuDriver("gpu", machine), null);
        assertEquals("""
                0000:03:00.0 3D controller [0302]: Device [1da0:0001]
                	Subsystem: Device [1da0:0001]
                	Kernel driver in use: gpu
                	Kernel modules: gpu""", cmds.lspci("-nnkD", "-s", "03:00.0"));
        assertEquals("04:00.0 Ethernet controller: Device 1da0:0002\n\tSubsystem: Device 1da0:0002",
                cmds.lspci("-k", "-s", "04:00.0"), "no driver bound, none matches");
        assertEquals(List.of("03:00.0"), cmds.lspci("-d", "::0302").lines().map(l -> l.substring(0, 7)).toList());
    }

    @Test
    void iommuShowsGroupsDomainsMappingsAndFaults() {
        DmaplaneCommands cmds = new DmaplaneCommands(machine, binder, DmaBufs.of(machine));
        IommuGroup shared = machine.iommu().groupOf(machine.pci().function(GPU)).orElseThrow();
        assertEquals(List.of("0000:02:00.0", "0000:02:01.0", GPU, "0000:04:00.0"),
                shared.devices().stream().map(Device::name).sorted().toList(),
                "no ACS on the switch's downstream ports: GPU, first HCA and both ports share one group");
        String out = cmds.iommu();
        assertTrue(out.startsWith("IOMMU on, default domain type dma"), out);
        assertTrue(out.contains("group " + shared.id() + ": domain " + shared.domain().name() + " (default)\n"), out);
        assertTrue(out.contains("  " + GPU + "  -"), out);
        assertTrue(out.lines().anyMatch(l -> l.matches(shared.domain().name() + " +dma +0 B +" + shared.id())), out);
        assertTrue(out.endsWith("faults: 0"), out);
        assertEquals("no IOMMU faults", cmds.iommu("faults"));
        assertEquals("no IOVA mapped in any domain", cmds.iommu("mappings"));

        PciFunction gpu = machine.pci().function(GPU);
        gpu.setMaster(true);
        long pa = machine.memory().allocPages(0) << HostMemory.PAGE_SHIFT;
        long iova = gpu.dma().mapSingle(pa, 4096, DmaDirection.BIDIRECTIONAL);
        assertTrue(cmds.iommu("mappings").contains(String.format("iova 0x%09x-0x%09x -> phys 0x%09x  4 KiB    rw",
                iova, iova + 4095, pa)), cmds.iommu("mappings"));
        assertTrue(cmds.iommu().lines().anyMatch(l -> l.matches(shared.domain().name() + " +dma +4 KiB +" + shared.id())));
        assertTrue(cmds.dmadebug().startsWith("dma-debug on: 1 active DMA mappings, 0 reports\n  " + GPU + "  1 active mappings"),
                cmds.dmadebug());

        long stale = iova - (1L << 20); // IOVAs come top-down below the 32-bit mask: this one is free
        assertThrows(DmaFaultException.class, () -> gpu.dma().busMaster().writeLong(stale, 1));
        assertEquals(String.format("%s write at iova 0x%x in domain %d: not mapped", GPU, stale, shared.domain().id()),
                cmds.iommu("faults"));
        assertTrue(cmds.iommu().endsWith("faults: 1 (dmaplane:iommu faults lists them)"));
        String debug = cmds.dmadebug();
        assertTrue(debug.contains("by kind: ACCESS_UNMAPPED=1"), debug);
        assertTrue(debug.contains("ACCESS_UNMAPPED: DMA-API: " + GPU + ": device write at iova 0x" + Long.toHexString(stale)), debug);

        gpu.dma().unmapSingle(iova, 4096, DmaDirection.BIDIRECTIONAL);
        assertTrue(cmds.dmadebug("-v").startsWith("dma-debug on: 0 active DMA mappings, 1 reports"), cmds.dmadebug("-v"));
        gpu.setMaster(false);
        machine.memory().putPage(pa >>> HostMemory.PAGE_SHIFT);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> cmds.iommu("bogus")).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> cmds.dmadebug("-x")).errno());
    }

    @Test
    void queryServiceReportsIommuAndDmaDebugInJdkTypes() {
        MachineQuery q = new MachineQuery(machine);
        PciFunction gpu = machine.pci().function(GPU);
        gpu.setMaster(true);
        assertThrows(DmaFaultException.class, () -> gpu.dma().busMaster().readLong(1L << 30));
        @SuppressWarnings("unchecked")
        Map<String, Object> iommu = (Map<String, Object>) q.apply("iommu");
        assertEquals(true, iommu.get("enabled"));
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> faults = (List<Map<String, Object>>) iommu.get("faults");
        assertEquals(1, faults.size());
        assertEquals(GPU, faults.getFirst().get("device"));
        assertEquals(1L << 30, faults.getFirst().get("iova"));
        assertEquals(false, faults.getFirst().get("write"));
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> groups = (List<Map<String, Object>>) iommu.get("groups");
        assertTrue(groups.stream().anyMatch(g -> ((List<?>) g.get("devices")).contains(GPU)
                && ((List<?>) g.get("devices")).size() == 4));
        @SuppressWarnings("unchecked")
        Map<String, Object> debug = (Map<String, Object>) q.apply("dmaDebug");
        assertEquals(0, debug.get("activeMappings"));
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> reports = (List<Map<String, Object>>) debug.get("reports");
        assertEquals("ACCESS_UNMAPPED", reports.getFirst().get("kind"));
        @SuppressWarnings("unchecked")
        Map<String, Object> status = (Map<String, Object>) q.apply("status");
        assertEquals(1, status.get("iommuFaults"));
        assertEquals(1, status.get("dmaDebugReports"));
        assertEquals(0, status.get("activeDmaMappings"));
        gpu.setMaster(false);
    }

    /**
     * {@code dmaplane:dma} and the status keys count the bytes device DMA put on the bus by where they landed, as an
     * IIO uncore PMU's inbound counters do ({@code arch/x86/events/intel/uncore_snbep.c}): a write into RAM through
     * the IOMMU is host RAM written, one the switch carries into the GPU's VRAM BAR is peer traffic
     * ({@code Documentation/driver-api/pci/p2pdma.rst}).
     */
    @Test
    void dmaShowsTrafficByDeviceAndTheStatusCountsTheMachine() {
        DmaplaneCommands cmds = new DmaplaneCommands(machine, binder, DmaBufs.of(machine));
        MachineQuery q = new MachineQuery(machine);
        assertTrue(cmds.dma().lines().skip(1).allMatch(l -> l.startsWith("machine ") && l.endsWith(" 0")), cmds.dma());
        PciFunction hca = machine.pci().function("0000:04:00.0");
        hca.setMaster(true);
        hca.dma().setDmaMask(-1L);
        long pa = machine.memory().allocPages(0) << HostMemory.PAGE_SHIFT;
        long iova = hca.dma().mapSingle(pa, 4096, DmaDirection.FROM_DEVICE);
        hca.dma().busMaster().write(iova, MemorySegment.ofArray(new byte[4096]));
        long vram = machine.pci().function(GPU).bar(2).orElseThrow().address();
        hca.dma().busMaster().write(vram, MemorySegment.ofArray(new byte[1000]));

        String out = cmds.dma();
        assertTrue(out.lines().anyMatch(l -> l.matches("0000:04:00\\.0 +0 +4096 +0 +1000 +0")), out);
        assertTrue(out.lines().anyMatch(l -> l.matches("machine +0 +4096 +0 +1000 +0")), out);
        assertTrue(out.lines().noneMatch(l -> l.startsWith(GPU)), "the GPU moved nothing: " + out);
        assertTrue(cmds.help().contains("dmaplane:dma "), cmds.help());
        @SuppressWarnings("unchecked")
        Map<String, Object> status = (Map<String, Object>) q.apply("status");
        assertEquals(0L, status.get("dmaRamReadBytes"));
        assertEquals(4096L, status.get("dmaRamWriteBytes"));
        assertEquals(0L, status.get("dmaPeerReadBytes"));
        assertEquals(1000L, status.get("dmaPeerWriteBytes"));
        assertEquals(0L, status.get("dmaAtomics"));
        hca.dma().unmapSingle(iova, 4096, DmaDirection.FROM_DEVICE);
        hca.setMaster(false);
        machine.memory().putPage(pa >>> HostMemory.PAGE_SHIFT);
    }

    /** dmaplane:dmabuf is the debugfs bufinfo of the machine's dma-buf registry (drivers/dma-buf/dma-buf.c). */
    @Test
    void dmabufListsTheMachinesBuffersAsBufinfo() {
        DmaplaneCommands cmds = new DmaplaneCommands(machine, binder, DmaBufs.of(machine));
        assertTrue(cmds.dmabuf().endsWith("Total 0 objects, 0 bytes"), cmds.dmabuf());
        DmaBuf buf = new SystemHeap(DmaBufs.of(machine)).allocate(8192);
        buf.setName("frame");
        buf.attach(machine.pci().function(GPU), null);
        String out = cmds.dmabuf();
        assertTrue(out.contains("\tsystem\t") && out.contains("frame"), out);
        assertTrue(out.contains("\t" + GPU + " (static, pins 0, mappings 0)"), out);
        assertTrue(out.endsWith("Total 1 objects, 8192 bytes"), out);
        assertTrue(cmds.help().contains("dmaplane:dmabuf"));
    }

    /** {@code dmaplane:interrupts} follows {@code /proc/interrupts} ({@code kernel/irq/proc.c show_interrupts}). */
    @Test
    void interruptsListsEveryRequestedVectorWithItsCount() {
        DmaplaneCommands cmds = new DmaplaneCommands(machine, binder, DmaBufs.of(machine));
        assertEquals("CPU0\n ERR:          0", cmds.interrupts().strip());
        PciFunction gpu = machine.pci().function(GPU);
        gpu.setMemorySpace(true);
        gpu.setMaster(true);
        try (IrqVectors iv = IrqVectors.alloc(gpu, 1, 4, IrqVectors.PCI_IRQ_MSIX)) {
            iv.requestTrigger(2, new IrqTrigger(), "copyengine");
            gpu.msix().orElseThrow().raise(2);
            gpu.msix().orElseThrow().raise(2);
            String out = cmds.interrupts();
            assertTrue(out.contains("   2:          2  PCI-MSIX-" + GPU + "    2-edge      copyengine"), out);
            assertFalse(out.contains("   0:"), "unrequested vectors are not listed: " + out);
        }
        assertFalse(cmds.interrupts().contains("copyengine"), "freed with the allocation");
        assertTrue(cmds.help().contains("dmaplane:interrupts"));
    }

    /**
     * Each line of the trace ring starts with the event's time since the machine's boot, in dmesg's
     * {@code [%5lu.%06lu]} (kernel/printk/printk.c, {@code print_time}).
     */
    private static void assertTimestamped(String trace) {
        Pattern stamp = Pattern.compile("^\\[ *(\\d+)\\.(\\d{6})\\] #\\d+ [A-Z_0-9]+ ");
        for (String line : trace.lines().toList()) {
            assertTrue(stamp.matcher(line).find(), "no timestamp: " + line);
        }
    }
}
