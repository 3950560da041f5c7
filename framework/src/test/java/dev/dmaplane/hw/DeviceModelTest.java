package dev.dmaplane.hw;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.impl.CopyEngineModel;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
import dev.dmaplane.pci.PciReset;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.CopyEngineClient;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Device models as hardware that comes and goes: a model arriving is a hot-add and a model leaving a surprise
 * removal ({@code drivers/pci/hotplug/pciehp_pci.c}, {@code drivers/pci/remove.c}); a slot whose model is not loaded
 * answers as an empty slot, config reads of all-ones ({@code PCI_POSSIBLE_ERROR}, {@code pci_dev_is_disconnected}).
 */
class DeviceModelTest {
    private static final String GPU = "0000:03:00.0";

    private final List<String> log = new ArrayList<>();
    private Machine machine;

    @AfterEach
    void close() {
        if (machine != null) {
            machine.close();
        }
    }

    private Machine bootWithoutModels() {
        machine = Machine.boot(TopologyLoader.load(TestMachines.text(TestMachines.DEFAULT_COPYENGINE), TopologyLoader.Format.YAML), Machine.Options.DEFAULT.withClassPathModels(false));
        return machine;
    }

    /** A driver for the GPU that takes the copy engine over at probe and copies a page through its IOMMU domain. */
    private final Driver copier = new Driver() {
        @Override
        public String name() {
            return "copier";
        }

        @Override
        public MatchTable matchTable() {
            return MatchTable.of(MatchEntry.Pci.of(0x1da0, 0x0001));
        }

        @Override
        public BoundDevice probe(Device device, MatchEntry match) {
            PciFunction fn = (PciFunction) device;
            CopyEngineClient ce = new CopyEngineClient(fn);
            HostMemory mem = machine.memory();
            long src = mem.allocPages(0) << HostMemory.PAGE_SHIFT;
            long dst = mem.allocPages(0) << HostMemory.PAGE_SHIFT;
            mem.slice(src, 4096).fill((byte) 0x5A);
            long s = fn.dma().mapSingle(src, 4096, DmaDirection.TO_DEVICE);
            long d = fn.dma().mapSingle(dst, 4096, DmaDirection.FROM_DEVICE);
            int status = ce.copy(s, d, 4096);
            log.add("probe " + fn.bdf() + " copy " + status + " byte " + mem.slice(dst, 4096).get(ValueLayout.JAVA_BYTE, 4095));
            return () -> {
                log.add("remove " + fn.bdf() + " id " + Long.toHexString(fn.bar(0).orElseThrow().mmio().read(REG_ID, 8)));
                fn.dma().unmapSingle(s, 4096, DmaDirection.TO_DEVICE);
                fn.dma().unmapSingle(d, 4096, DmaDirection.FROM_DEVICE);
                ce.close();
                mem.putPage(src >>> HostMemory.PAGE_SHIFT);
                mem.putPage(dst >>> HostMemory.PAGE_SHIFT);
            };
        }
    };

    @Test
    void theClassPathModelsAreLoadedOnAPlainClassPath() {
        machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
        assertEquals(List.of("copyengine"), machine.modelNames());
        PciFunction gpu = machine.pci().function(GPU);
        assertTrue(gpu.absence().isEmpty());
        assertEquals(ID_VALUE, gpu.bar(0).orElseThrow().mmio().read(REG_ID, 8));
    }

    @Test
    void aSlotWhoseModelIsNotLoadedAnswersAsAbsentHardware() {
        Machine m = bootWithoutModels();
        PciFunction gpu = m.pci().function(GPU);
        assertEquals("device model 'copyengine' is not loaded", gpu.absence().orElseThrow());
        assertEquals(0xFFFF, gpu.configSpace().read(PciRegs.VENDOR_ID, 2), "an empty slot reads all-ones");
        assertEquals(-1, gpu.configSpace().read(PciRegs.CLASS_REVISION, 4));
        assertEquals(-1L, gpu.bar(0).orElseThrow().mmio().read(REG_ID, 8), "BAR access ends in a master abort");
        gpu.configSpace().write(PciRegs.COMMAND, 2, PciRegs.COMMAND_MASTER);
        assertFalse(gpu.busMasterEnabled(), "writes to an empty slot go nowhere");
        assertFalse(m.devices().devices().contains(gpu), "enumeration finds nothing there");
        assertTrue(m.pci().lspciTree().contains("<absent> " + GPU + " (device model 'copyengine' is not loaded)"),
                m.pci().lspciTree());
        assertTrue(m.pci().lspciVerbose(gpu).contains("device model 'copyengine' is not loaded"));
        assertTrue(m.pci().function("0000:04:00.0").absence().isEmpty(), "functions naming no model are there");
    }

    @Test
    void aMachineFileNamingAModelNobodyProvidesBootsWithThatSlotAbsent() {
        String text = TestMachines.text(TestMachines.DEFAULT_COPYENGINE).replace("model: copyengine", "model: tpu");
        machine = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
        assertEquals("device model 'tpu' is not loaded", machine.pci().function(GPU).absence().orElseThrow());
        assertEquals(List.of("copyengine"), machine.modelNames());
    }

    @Test
    void loadingAModelIsAHotAddThatDriversBindAndUnloadingItASurpriseRemoval() {
        Machine m = bootWithoutModels();
        m.devices().registerDriver(copier);
        assertEquals(List.of(), log, "nothing to drive yet");
        long frames = m.memory().allocatedFrames();

        CopyEngineModel model = new CopyEngineModel();
        m.addModel(model);
        PciFunction gpu = m.pci().function(GPU);
        assertEquals(List.of("probe " + GPU + " copy " + ST_OK + " byte 90"), log, "the driver bound and DMA-ed");
        assertTrue(gpu.isPresent());

        assertTrue(m.removeModel(model));
        assertEquals("remove " + GPU + " id ffffffffffffffff", log.get(1),
                "the driver's remove sees the hardware gone, as after a surprise removal");
        assertFalse(gpu.isPresent());
        assertEquals("device model 'copyengine' was unloaded", gpu.absence().orElseThrow());
        assertEquals(0, m.activeDmaMappings(), "nothing mapped");
        assertEquals(frames, m.memory().allocatedFrames(), "nothing allocated");
        assertEquals(0, m.memory().pinnedFrames(), "nothing pinned");
        assertTrue(gpu.bar(0).orElseThrow().mmio().handler().isEmpty(), "the registers are detached");

        m.addModel(model);
        assertEquals(3, log.size(), "a model arriving again is new hardware the driver binds again: " + log);
        assertTrue(gpu.isPresent());
    }

    @Test
    void hardwareArrivingAgainComesUpAsFirmwareLeftItNotAsTheLastDriverDid() {
        Machine m = bootWithoutModels();
        CopyEngineModel model = new CopyEngineModel();
        m.addModel(model);
        PciFunction gpu = m.pci().function(GPU);
        long bar0 = gpu.bar(0).orElseThrow().address();
        int msixControl = gpu.configSpace().findCapability(PciRegs.CAP_ID_MSIX).orElseThrow() + PciRegs.MSIX_FLAGS;
        gpu.setMaster(true);
        gpu.configSpace().write(msixControl, 2, PciRegs.MSIX_FLAGS_ENABLE);
        gpu.bar(0).orElseThrow().mmio().write(gpu.msix().orElseThrow().tableOffset() + 12, 4, 0);
        assertFalse(gpu.msix().orElseThrow().masked(0));

        m.removeModel(model);
        m.addModel(model);

        assertFalse(gpu.busMasterEnabled());
        assertTrue(gpu.configSpace().memorySpaceEnabled(), "firmware enabled decoding of the assigned BARs");
        assertEquals(bar0, gpu.bar(0).orElseThrow().address());
        assertEquals(0, gpu.configSpace().read(msixControl, 2) & PciRegs.MSIX_FLAGS_ENABLE);
        assertTrue(gpu.msix().orElseThrow().masked(0), "a new device's vectors start masked");
    }

    @Test
    void unloadingADriverNeverRemovesTheHardware() {
        machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
        machine.devices().registerDriver(copier);
        PciFunction gpu = machine.pci().function(GPU);
        machine.devices().unregisterDriver(copier);
        assertEquals(2, log.size());
        assertTrue(gpu.isPresent());
        assertTrue(gpu.absence().isEmpty());
        assertEquals(ID_VALUE, gpu.bar(0).orElseThrow().mmio().read(REG_ID, 8));
    }

    @Test
    void badModelsAreRefusedAndLeaveNothingBehind() {
        Machine m = bootWithoutModels();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> m.addModel(null)).errno());
        ErrnoException badName = assertThrows(ErrnoException.class, () -> m.addModel(model("Bad Name", ctx -> null)));
        assertEquals(Errno.EINVAL, badName.errno());
        assertTrue(badName.getMessage().contains("'Bad Name'"), badName.getMessage());

        m.addModel(new CopyEngineModel());
        ErrnoException twice = assertThrows(ErrnoException.class, () -> m.addModel(new CopyEngineModel()));
        assertEquals(Errno.EEXIST, twice.errno());
        assertTrue(twice.getMessage().contains("'copyengine'"), twice.getMessage());
        assertEquals(List.of("copyengine"), m.modelNames());
    }

    @Test
    void aModelRegisteringTwoBarsOnOneIndexLeavesTheSlotAbsentWithTheReason() {
        Machine m = bootWithoutModels();
        List<ErrnoException> seen = new ArrayList<>();
        m.addModel(model("copyengine", ctx -> {
            ctx.registers(0, RegisterBlock.builder("first").constant("ID", 0, 8, 1).build());
            try {
                ctx.registers(0, RegisterBlock.builder("second").constant("ID", 0, 8, 2).build());
            } catch (ErrnoException e) {
                seen.add(e);
                throw e;
            }
            return kind -> { };
        }));
        assertEquals(Errno.EEXIST, seen.getFirst().errno());
        assertTrue(seen.getFirst().getMessage().contains("BAR0"), seen.getFirst().getMessage());
        PciFunction gpu = m.pci().function(GPU);
        assertTrue(gpu.absence().orElseThrow().contains("BAR0 is already registered"), gpu.absence().get());
        assertTrue(gpu.bar(0).orElseThrow().mmio().handler().isEmpty(), "the first registration was undone");
        assertFalse(gpu.isPresent());
    }

    @Test
    void registeringTheWrongKindOfBarOrOneTheFunctionLacksIsEinval() {
        Machine m = bootWithoutModels();
        List<Errno> errnos = new ArrayList<>();
        m.addModel(model("copyengine", ctx -> {
            errnos.add(assertThrows(ErrnoException.class, () -> ctx.registers(2, RegisterBlock.builder("r").build())).errno());
            errnos.add(assertThrows(ErrnoException.class, () -> ctx.deviceMemory(0)).errno());
            errnos.add(assertThrows(ErrnoException.class, () -> ctx.registers(4, RegisterBlock.builder("r").build())).errno());
            errnos.add(assertThrows(ErrnoException.class, () -> ctx.registers(0,
                    RegisterBlock.builder("huge").constant("FAR", 32L << 20, 8, 0).build())).errno());
            Bar.Memory vram = ctx.deviceMemory(2);
            assertEquals(16L << 30, vram.size());
            return kind -> { };
        }));
        assertEquals(List.of(Errno.EINVAL, Errno.EINVAL, Errno.EINVAL, Errno.EINVAL), errnos);
        assertTrue(m.pci().function(GPU).isPresent(), "the model coped with its refusals and came up");
    }

    @Test
    void aBridgeNamingAModelIsRefusedAtBoot() {
        String text = TestMachines.text(TestMachines.DEFAULT_COPYENGINE).replaceFirst("          type: rootPort", "          model: copyengine\n          type: rootPort");
        assertNotEquals(TestMachines.text(TestMachines.DEFAULT_COPYENGINE), text);
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), Machine.Options.DEFAULT));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("is a bridge"), e.getMessage());
    }

    @Test
    void quiesceAndRemoveRunWhenTheModelLeavesAndQuiesceAtShutdown() {
        Machine m = bootWithoutModels();
        DeviceModel tracked = model("copyengine", ctx -> new ModelDevice() {
            @Override
            public void reset(PciReset kind) {
                log.add("reset " + kind);
            }

            @Override
            public void quiesce() {
                log.add("quiesce");
            }

            @Override
            public void remove() {
                log.add("remove");
            }
        });
        m.addModel(tracked);
        m.removeModel(tracked);
        assertEquals(List.of("quiesce", "remove"), log);
        m.addModel(tracked);
        m.close();
        assertEquals(List.of("quiesce", "remove", "quiesce", "remove"), log);
        assertFalse(m.removeModel(tracked), "nothing to remove after shutdown");
    }

    private static DeviceModel model(String name, Function<ModelContext, ModelDevice> realize) {
        return new DeviceModel() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public ModelDevice realize(ModelContext ctx) {
                return realize.apply(ctx);
            }
        };
    }
}
