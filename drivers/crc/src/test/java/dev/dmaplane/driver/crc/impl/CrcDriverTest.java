package dev.dmaplane.driver.crc.impl;

import dev.dmaplane.driver.crc.CrcOffload;
import dev.dmaplane.driver.crc.model.CrcModel;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.hw.ModelDma;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.MmioHandler;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.zip.CRC32C;

import static dev.dmaplane.driver.crc.model.CrcRegs.IRQ_VECTOR;
import static dev.dmaplane.driver.crc.model.CrcRegs.MAX_LENGTH;
import static dev.dmaplane.driver.crc.model.CrcRegs.REG_CTRL;
import static dev.dmaplane.driver.crc.model.CrcRegs.REG_DOORBELL;
import static dev.dmaplane.driver.crc.model.CrcRegs.REG_HEAD;
import static dev.dmaplane.driver.crc.model.CrcRegs.CTRL_ENABLE;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The crc driver's probe and remove in the order of a PCI driver ({@code Documentation/PCI/pci.rst}: enable,
 * {@code pci_set_master}, {@code pci_alloc_irq_vectors}, {@code request_threaded_irq}, {@code dma_alloc_coherent}),
 * a request mapped with {@code dma_map_single} only while it runs ({@code Documentation/core-api/dma-api.rst}), and
 * remove, or the hardware leaving, leaving nothing mapped, allocated or running.
 */
class CrcDriverTest {
    private static final String CRC = "0000:02:00.0";
    private static final String IRQ_THREAD = "irq/" + IRQ_VECTOR + "-" + CrcDriver.NAME;

    private final Machine machine = Machine.boot(TopologyLoader.load(TestMachines.text(TestMachines.SMALL_CRC),
            TopologyLoader.Format.YAML), Machine.Options.DEFAULT.withClassPathModels(false));
    private final PciFunction fn = machine.pci().function(CRC);
    private final List<CrcOffload> published = new CopyOnWriteArrayList<>();
    private final CrcDriver driver = new CrcDriver(machine, engine -> {
        published.add(engine);
        return () -> published.remove(engine);
    }, Duration.ofSeconds(5));

    @AfterEach
    void close() {
        machine.close();
    }

    private static boolean threadAlive(String name) {
        return Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.getName().equals(name) && t.isAlive());
    }

    /** {@code data} in fresh host pages; returns the physical address. */
    private long hostBuffer(byte[] data) {
        int order = 64 - Long.numberOfLeadingZeros((data.length - 1L) >> HostMemory.PAGE_SHIFT);
        long phys = machine.memory().allocPages(order) << HostMemory.PAGE_SHIFT;
        machine.memory().slice(phys, data.length).copyFrom(MemorySegment.ofArray(data));
        return phys;
    }

    @Test
    void probeOffersTheEngineAndRemoveLeavesNothingBehind() {
        long frames = machine.memory().allocatedFrames();
        machine.addModel(new CrcModel());
        machine.devices().registerDriver(driver);
        CrcOffload engine = published.getFirst();
        assertEquals(CRC, engine.device());
        assertEquals(1, machine.activeDmaMappings(), "while bound only the command ring is mapped");
        assertTrue(threadAlive(IRQ_THREAD));
        assertTrue(fn.msix().orElseThrow().enabled());

        byte[] data = new byte[300_000];
        new Random(11).nextBytes(data);
        long phys = hostBuffer(data);
        CRC32C expected = new CRC32C();
        expected.update(data);
        for (int i = 0; i < 70; i++) { // more requests than the ring has commands
            assertEquals((int) expected.getValue(), engine.crc32c(phys, data.length));
        }
        assertEquals(1, machine.activeDmaMappings(), "each request unmapped its buffer before returning");
        IrqVectors irqs = IrqVectors.of(fn).orElseThrow();
        assertEquals(70, irqs.interrupts(IRQ_VECTOR), "each request completed by its interrupt");
        machine.memory().putPage(phys >>> HostMemory.PAGE_SHIFT);

        machine.devices().unregisterDriver(driver);
        assertEquals(List.of(), published, "the CrcOffload went with the binding");
        assertEquals(0, machine.activeDmaMappings(), "ring freed");
        assertEquals(frames, machine.memory().allocatedFrames());
        assertFalse(threadAlive(IRQ_THREAD), "devres freed the vector and stopped its thread");
        assertFalse(fn.msix().orElseThrow().enabled());
        assertEquals(0, fn.devres().size());
        assertFalse(fn.busMasterEnabled());
        ErrnoException gone = assertThrows(ErrnoException.class, () -> engine.crc32c(phys, 8));
        assertEquals(Errno.ENODEV, gone.errno());
    }

    @Test
    void theHardwareLeavingIsASurpriseRemovalTheDriverSurvives() {
        CrcModel model = new CrcModel();
        machine.devices().registerDriver(driver);
        assertEquals(List.of(), published, "an absent slot binds nothing");
        machine.addModel(model);
        assertEquals(1, published.size(), "hot-add: the driver bound");
        assertTrue(machine.removeModel(model));
        assertEquals(List.of(), published);
        assertEquals(0, machine.activeDmaMappings());
        assertFalse(threadAlive(IRQ_THREAD));
        machine.addModel(model);
        assertEquals(1, published.size(), "the hardware coming back binds again");
    }

    @Test
    void badRequestsAreRefusedWithTheValueAndLeaveNothingMapped() {
        machine.addModel(new CrcModel());
        machine.devices().registerDriver(driver);
        CrcOffload engine = published.getFirst();
        long phys = hostBuffer(new byte[16]);
        ErrnoException zero = assertThrows(ErrnoException.class, () -> engine.crc32c(phys, 0));
        assertEquals(Errno.EINVAL, zero.errno());
        assertTrue(zero.getMessage().contains("length 0"), zero.getMessage());
        ErrnoException big = assertThrows(ErrnoException.class, () -> engine.crc32c(phys, MAX_LENGTH + 1));
        assertEquals(Errno.EINVAL, big.errno());
        ErrnoException outside = assertThrows(ErrnoException.class, () -> engine.crc32c(machine.memory().size(), 16));
        assertEquals(Errno.EFAULT, outside.errno(), outside.getMessage());
        assertEquals(1, machine.activeDmaMappings(), "only the ring");
    }

    /** {@code crc:run}, after {@code crypto/tcrypt.c}: the engine's CRC32C against software's, bad sizes refused. */
    @Test
    void crcRunChecksEachEngineAgainstSoftware() {
        machine.devices().registerDriver(driver);
        assertEquals("no CRC engine is bound", driver.run(16), "the hardware has not arrived yet");
        machine.addModel(new CrcModel());
        long frames = machine.memory().allocatedFrames();
        byte[] data = new byte[100_000];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (31 * i + 7);
        }
        CRC32C expected = new CRC32C();
        expected.update(data);
        assertEquals(String.format("%s crc32c 0x%08x of 100000 bytes, matches software", CRC, expected.getValue()),
                driver.run(100_000));
        assertEquals(frames, machine.memory().allocatedFrames(), "the buffer went back");
        ErrnoException big = assertThrows(ErrnoException.class, () -> driver.run((int) HostMemory.HUGE_PAGE_SIZE + 1));
        assertEquals(Errno.EINVAL, big.errno());
        assertTrue(big.getMessage().contains("size " + (HostMemory.HUGE_PAGE_SIZE + 1)), big.getMessage());
    }

    @Test
    void theDriverClaimsOnlyItsEngine() {
        machine.addModel(new CrcModel());
        machine.devices().registerDriver(driver);
        assertEquals(List.of(CRC), machine.devices().devices().stream().filter(d -> d.driver().isPresent())
                .map(d -> d.name()).toList());
    }

    /**
     * A request that times out leaves its command in the ring: the driver must stop the engine before it unmaps the
     * buffer, since a device must not touch a buffer after {@code dma_unmap_single}
     * ({@code Documentation/core-api/dma-api.rst}), so the command never runs later and the next request sees only
     * its own. The model loses the first doorbell write, as a hung engine would.
     */
    @Test
    void aTimedOutCommandIsDroppedAndNeverRunsLater() {
        AtomicBoolean loseDoorbell = new AtomicBoolean(true);
        machine.addModel(new DeviceModel() {
            @Override
            public String name() {
                return CrcModel.NAME;
            }

            @Override
            public ModelDevice realize(ModelContext ctx) {
                return new CrcModel().realize(new LosingDoorbell(ctx, loseDoorbell));
            }
        });
        CrcDriver impatient = new CrcDriver(machine, engine -> {
            published.add(engine);
            return () -> published.remove(engine);
        }, Duration.ofMillis(100));
        machine.devices().registerDriver(impatient);
        CrcOffload engine = published.getFirst();
        byte[] data = new byte[4096];
        new Random(5).nextBytes(data);
        long phys = hostBuffer(data);
        CRC32C expected = new CRC32C();
        expected.update(data);

        ErrnoException lost = assertThrows(ErrnoException.class, () -> engine.crc32c(phys, data.length));
        assertEquals(Errno.ETIMEDOUT, lost.errno(), lost.getMessage());
        assertFalse(loseDoorbell.get());
        assertEquals(1, machine.activeDmaMappings(), "the timed-out request unmapped its buffer");
        Bar.Mmio regs = fn.bar(0).orElseThrow().mmio();
        assertEquals(0, regs.read(REG_CTRL, 8), "the engine was reset, so the queued command cannot run");

        assertEquals((int) expected.getValue(), engine.crc32c(phys, data.length));
        assertEquals(CTRL_ENABLE, regs.read(REG_CTRL, 8), "re-programmed by the next request");
        assertEquals(1, regs.read(REG_HEAD, 8), "only the new command ran, not the timed-out one before it");
        assertEquals(1, IrqVectors.of(fn).orElseThrow().interrupts(IRQ_VECTOR));
        machine.devices().unregisterDriver(impatient);
        assertEquals(0, machine.activeDmaMappings());
    }

    /** The model's context with its register BAR losing the first doorbell write while {@code lose} is set. */
    private record LosingDoorbell(ModelContext ctx, AtomicBoolean lose) implements ModelContext {
        @Override
        public PciFunction function() {
            return ctx.function();
        }

        @Override
        public Map<String, String> properties() {
            return ctx.properties();
        }

        @Override
        public void registers(int bar, MmioHandler registers) {
            ctx.registers(bar, new MmioHandler() {
                @Override
                public long read(long offset, int size) {
                    return registers.read(offset, size);
                }

                @Override
                public void write(long offset, int size, long value) {
                    if (offset != REG_DOORBELL || !lose.getAndSet(false)) {
                        registers.write(offset, size, value);
                    }
                }
            });
        }

        @Override
        public Bar.Memory deviceMemory(int bar) {
            return ctx.deviceMemory(bar);
        }

        @Override
        public void dmaAddressBits(int bits) {
            ctx.dmaAddressBits(bits);
        }

        @Override
        public ModelDma dma() {
            return ctx.dma();
        }

        @Override
        public Msix.Outcome raise(int vector) {
            return ctx.raise(vector);
        }
    }
}
