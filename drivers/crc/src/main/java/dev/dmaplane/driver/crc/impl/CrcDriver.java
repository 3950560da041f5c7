package dev.dmaplane.driver.crc.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.driver.crc.CrcOffload;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.irq.IrqReturn;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.shell.CommandUsage;
import org.apache.felix.service.command.Descriptor;
import org.osgi.framework.BundleContext;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.time.Duration;
import java.util.Hashtable;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.stream.Collectors;
import java.util.zip.CRC32C;

import static dev.dmaplane.driver.crc.model.CrcRegs.*;

/** {@code crc32c}, the PCI driver of the CRC32C engine: each bound engine a {@link CrcOffload}, as a crypto shash. */
@Component(service = Driver.class, immediate = true, property = {"osgi.command.scope=crc", "osgi.command.function=run"})
public final class CrcDriver implements Driver {
    private static final VarHandle STATUS = ValueLayout.JAVA_INT.varHandle();
    /** The driver's name. */
    public static final String NAME = "crc32c";
    static final int RING = 64;

    private final Machine machine;
    private final Function<CrcOffload, Runnable> publisher; // offers an engine until the returned action runs
    private final Duration timeout;
    private final List<Engine> engines = new CopyOnWriteArrayList<>();

    @Activate
    public CrcDriver(BundleContext context, @Reference Machine machine) {
        this(machine, engine -> context.registerService(CrcOffload.class, engine,
                new Hashtable<>(Map.of("crc.device", engine.device())))::unregister, Duration.ofSeconds(5));
    }

    CrcDriver(Machine machine, Function<CrcOffload, Runnable> publisher, Duration timeout) {
        this.machine = machine;
        this.publisher = publisher;
        this.timeout = timeout;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public MatchTable matchTable() {
        return MatchTable.of(MatchEntry.Pci.of(0x1da0, 0x0c32));
    }

    /** Probes the engine and publishes it; devres withdraws it first thing after remove. */
    @Override
    public BoundDevice probe(Device device, MatchEntry match) {
        if (!(device instanceof PciFunction fn)) {
            throw new ErrnoException(Errno.ENODEV, device.name() + " is not a PCI function");
        }
        Engine engine = new Engine(fn);
        fn.devres().add("crypto_unregister_shash", publisher.apply(engine));
        engines.add(engine);
        return engine;
    }

    /** Gogo {@code crc:run SIZE}: each bound engine's CRC32C of SIZE bytes {@code 31 * i + 7}, checked as tcrypt does. */
    @Descriptor("each bound engine's CRC32C of SIZE bytes, checked against software")
    public String run(@Descriptor("SIZE") int size) {
        if (size < 1 || size > HostMemory.HUGE_PAGE_SIZE) {
            throw new ErrnoException(Errno.EINVAL, "crc:run size " + size + " outside 1.." + HostMemory.HUGE_PAGE_SIZE);
        }
        long pfn = machine.memory().allocPages(64 - Long.numberOfLeadingZeros((size - 1L) >> HostMemory.PAGE_SHIFT));
        try {
            MemorySegment data = machine.memory().slice(pfn << HostMemory.PAGE_SHIFT, size);
            for (int i = 0; i < size; i++) {
                data.set(ValueLayout.JAVA_BYTE, i, (byte) (31 * i + 7));
            }
            CRC32C software = new CRC32C();
            software.update(data.asByteBuffer());
            String out = engines.stream().map(engine -> {
                int crc = engine.crc32c(pfn << HostMemory.PAGE_SHIFT, size);
                return String.format("%s crc32c 0x%08x of %d bytes, %s", engine.device(), crc, size,
                        crc == (int) software.getValue() ? "matches software" : "MISMATCH with software");
            }).collect(Collectors.joining("\n"));
            return out.isEmpty() ? "no CRC engine is bound" : out;
        } finally {
            machine.memory().putPage(pfn);
        }
    }

    /** What the Gogo runtime calls when no form of a command takes its arguments: the command's usage, EINVAL. */
    public String _main(String... argv) {
        throw CommandUsage.wrongArguments(this, "crc", argv);
    }

    /** One bound engine; requests run one at a time, and remove waits for the one in flight. */
    private final class Engine implements CrcOffload, BoundDevice {
        private final PciFunction fn;
        private final Bar.Mmio regs;
        private final IrqTrigger completion = new IrqTrigger();
        private final CoherentBuffer ring;
        private boolean removed;
        private long tail;

        /** Probe in a PCI driver's order ({@code Documentation/PCI/pci.rst}), devres undoing each step. */
        Engine(PciFunction fn) {
            this.fn = fn;
            this.regs = fn.bar(0).orElseThrow(() -> new ErrnoException(Errno.ENODEV, fn.name() + ": no BAR0, no CRC engine")).mmio();
            fn.setMemorySpace(true);
            fn.devres().add("pci_disable_device", () -> fn.setMemorySpace(false));
            long id = regs.read(REG_ID, 8);
            if (id != ID_VALUE) {
                throw new ErrnoException(Errno.ENODEV, String.format("%s: REG_ID reads %#x, not a CRC engine", fn.name(), id));
            }
            fn.dma().setDmaMask(-1L);
            fn.setMaster(true);
            fn.devres().add("pci_clear_master", () -> fn.setMaster(false));
            IrqVectors.alloc(fn, 1, 1, IrqVectors.PCI_IRQ_MSIX).request(IRQ_VECTOR, null, vector -> {
                completion.signal();
                return IrqReturn.HANDLED;
            }, NAME);
            this.ring = fn.dma().allocCoherent((long) RING * CMD_SIZE);
            fn.devres().add("dma_free_coherent", () -> fn.dma().freeCoherent(ring));
            fn.devres().add("disable the engine", () -> regs.write(REG_CTRL, 8, 0));
            program();
        }

        @Override
        public String device() {
            return fn.name();
        }

        /** Reset, ring base and size, enable: at probe and whenever the engine stopped. */
        private void program() {
            regs.write(REG_CTRL, 8, CTRL_RESET);
            regs.write(REG_RING_BASE, 8, ring.dmaAddress());
            regs.write(REG_RING_SIZE, 8, RING);
            regs.write(REG_CTRL, 8, CTRL_ENABLE);
            tail = 0;
        }

        @Override
        public synchronized int crc32c(long physAddr, int length) {
            if (removed) {
                throw new ErrnoException(Errno.ENODEV, fn.name() + ": the CRC engine was removed");
            }
            if (length < 1 || length > MAX_LENGTH) {
                throw new ErrnoException(Errno.EINVAL, "crc32c length " + length + " outside 1.." + MAX_LENGTH);
            }
            if (regs.read(REG_CTRL, 8) != CTRL_ENABLE) {
                program(); // halted, or reset after a request that did not complete
            }
            long bus = fn.dma().mapSingle(physAddr, length, DmaDirection.TO_DEVICE);
            try {
                MemorySegment cmd = ring.cpu().asSlice((tail & (RING - 1)) * CMD_SIZE, CMD_SIZE);
                cmd.set(ValueLayout.JAVA_LONG, CMD_SRC, bus);
                cmd.set(ValueLayout.JAVA_INT, CMD_LEN, length);
                cmd.set(ValueLayout.JAVA_INT, CMD_FLAGS, FLAG_INTERRUPT);
                STATUS.setRelease(cmd, (long) CMD_STATUS, ST_PENDING); // wmb(): the command before the doorbell
                regs.write(REG_DOORBELL, 8, ++tail);
                int st = await(cmd);
                if (st != ST_OK) {
                    throw new ErrnoException(st == ST_BAD_COMMAND ? Errno.EINVAL : Errno.EIO, String.format(
                            "%s: crc32c of %d bytes at iova %#x ended with status %d", fn.name(), length, bus, st));
                }
                return cmd.get(ValueLayout.JAVA_INT, CMD_RESULT);
            } finally {
                fn.dma().unmapSingle(bus, length, DmaDirection.TO_DEVICE);
            }
        }

        /** Sleeps on the completion interrupt until the status leaves {@code ST_PENDING}, within the timeout. */
        private int await(MemorySegment cmd) {
            long deadline = System.nanoTime() + timeout.toNanos();
            int st;
            try {
                while ((st = (int) STATUS.getAcquire(cmd, (long) CMD_STATUS)) == ST_PENDING) {
                    long left = deadline - System.nanoTime();
                    if (left <= 0 || (regs.read(REG_CTRL, 8) & CTRL_HALTED) != 0) {
                        throw abandon(left <= 0 ? Errno.ETIMEDOUT : Errno.EIO, null);
                    }
                    completion.await(left, TimeUnit.NANOSECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw abandon(Errno.EINTR, e);
            }
            return st;
        }

        /** Resets the engine before the request's buffer is unmapped, so that its command can never run later. */
        private ErrnoException abandon(Errno errno, Throwable cause) {
            String state = String.format("ctrl %#x, head %d", regs.read(REG_CTRL, 8), regs.read(REG_HEAD, 8));
            regs.write(REG_CTRL, 8, CTRL_RESET);
            return new ErrnoException(errno, String.format("%s: command %d not completed in %d ms (%s): engine reset",
                    fn.name(), tail - 1, timeout.toMillis(), state), cause);
        }

        /** Refuses new requests once the one in flight is done; devres then disables the engine and frees its ring. */
        @Override
        public synchronized void remove() {
            engines.remove(this);
            removed = true;
        }
    }
}
