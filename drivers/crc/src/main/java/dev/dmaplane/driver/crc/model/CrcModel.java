package dev.dmaplane.driver.crc.model;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.hw.RegisterBlock;
import dev.dmaplane.pci.PciReset;
import org.osgi.service.component.annotations.Component;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.zip.CRC32C;

import static dev.dmaplane.driver.crc.model.CrcRegs.*;

/** The {@code crc} device model (QEMU's {@code TypeInfo} and {@code realize}): a CRC32C engine behind BAR0. */
@Component(service = DeviceModel.class)
public final class CrcModel implements DeviceModel {
    /** The name machine files give it. */
    public static final String NAME = "crc";
    private static final Logger LOG = LoggerFactory.getLogger(CrcModel.class);

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public ModelDevice realize(ModelContext ctx) {
        Engine engine = new Engine(ctx);
        ctx.registers(0, engine.registers);
        return engine;
    }

    /** One engine: writes and reset hold its lock, all work runs in doorbell writes, reads see volatile state. */
    private static final class Engine implements ModelDevice {
        private final ModelContext ctx;
        private final RegisterBlock registers;
        private volatile long ctrl;
        private volatile boolean halted;
        private volatile long ringBase;
        private volatile long ringSize;
        private volatile long head;

        Engine(ModelContext ctx) {
            this.ctx = ctx;
            this.registers = RegisterBlock.builder(ctx.function().bdf() + " crc BAR0")
                    .constant("ID", REG_ID, 8, ID_VALUE)
                    .register("CTRL", REG_CTRL, 8, () -> ctrl | (halted ? CTRL_HALTED : 0), this::control)
                    .register("RING_BASE", REG_RING_BASE, 8, () -> ringBase, this::ringBase)
                    .register("RING_SIZE", REG_RING_SIZE, 8, () -> ringSize, this::ringSize)
                    .readOnly("HEAD", REG_HEAD, 8, () -> head)
                    .doorbell("DOORBELL", REG_DOORBELL, 8, this::doorbell)
                    .build();
        }

        /** Every register back to its power-on value: disabled, no ring, head 0. */
        @Override
        public synchronized void reset(PciReset kind) {
            control(CTRL_RESET);
            ringBase = ringSize = 0;
        }

        private synchronized void control(long value) {
            ctrl = value & CTRL_ENABLE;
            if ((value & CTRL_RESET) != 0) {
                halted = false;
                head = 0;
            }
        }

        private synchronized void ringBase(long base) {
            ringBase = ctrl == 0 ? base & -CMD_SIZE : ringBase;
        }

        private synchronized void ringSize(long size) {
            ringSize = ctrl == 0 && size >= 2 && size <= 4096 && Long.bitCount(size) == 1 ? size : ringSize;
        }

        /** Runs the commands from the head up to {@code tail}; a fetch or write-back fault halts the engine. */
        private synchronized void doorbell(long tail) {
            halted |= ctrl != 0 && Long.compareUnsigned(tail - head, ringSize) > 0; // more than a ring past the head
            MemorySegment cmd = MemorySegment.ofArray(new long[CMD_SIZE / 8]);
            while (ctrl != 0 && !halted && head != tail) {
                long at = ringBase + (head & (ringSize - 1)) * CMD_SIZE;
                halted = !ctx.dma().read(at, cmd).ok();
                if (!halted) {
                    cmd.set(ValueLayout.JAVA_INT, CMD_STATUS, execute(cmd));
                    halted = !ctx.dma().write(at + CMD_RESULT, cmd.asSlice(CMD_RESULT, 4)).ok()
                            || !ctx.dma().write(at + CMD_STATUS, cmd.asSlice(CMD_STATUS, 4)).ok();
                }
                if (!halted) {
                    head++;
                    raise(cmd.get(ValueLayout.JAVA_INT, CMD_FLAGS));
                }
            }
        }

        /** The command's status; a source the IOMMU refuses is {@code ST_READ_FAULT}, not an exception. */
        private int execute(MemorySegment cmd) {
            long src = cmd.get(ValueLayout.JAVA_LONG, CMD_SRC);
            long len = Integer.toUnsignedLong(cmd.get(ValueLayout.JAVA_INT, CMD_LEN));
            cmd.set(ValueLayout.JAVA_INT, CMD_RESULT, 0);
            if (len == 0 || len > MAX_LENGTH || (cmd.get(ValueLayout.JAVA_INT, CMD_FLAGS) & ~FLAG_INTERRUPT) != 0
                    || Long.compareUnsigned(src + len - 1, src) < 0) {
                return ST_BAD_COMMAND;
            }
            byte[] data = new byte[(int) len];
            if (!ctx.dma().read(src, MemorySegment.ofArray(data)).ok()) {
                return ST_READ_FAULT;
            }
            CRC32C crc = new CRC32C();
            crc.update(data);
            cmd.set(ValueLayout.JAVA_INT, CMD_RESULT, (int) crc.getValue());
            return ST_OK;
        }

        /** Signals vector 0 if the flags ask; with no interrupt mode enabled the message goes nowhere, as on a bus. */
        private void raise(int flags) {
            try {
                if ((flags & FLAG_INTERRUPT) != 0) {
                    ctx.raise(IRQ_VECTOR);
                }
            } catch (ErrnoException e) {
                LOG.warn("{}: completion interrupt lost: {}", ctx.function().bdf(), e.getMessage(), e);
            }
        }
    }
}
