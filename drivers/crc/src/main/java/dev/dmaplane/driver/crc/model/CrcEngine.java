package dev.dmaplane.driver.crc.model;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DmaStatus;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.hw.ModelDma;
import dev.dmaplane.hw.RegisterBlock;
import dev.dmaplane.pci.MmioHandler;
import dev.dmaplane.pci.PciReset;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.zip.CRC32C;

import static dev.dmaplane.driver.crc.model.CrcRegs.*;

/**
 * The emulated CRC32C engine of one function ({@link CrcRegs}). Command fetches, source reads and write-backs are
 * DMA through the function's bus master ({@link ModelDma}): a refused source read is {@code ST_READ_FAULT} in the
 * command, a refused fetch or write-back halts the engine. Every register access runs under this object's lock,
 * and work happens only inside doorbell writes, so reset waits for it.
 */
final class CrcEngine implements ModelDevice, MmioHandler {
    private static final Logger LOG = LoggerFactory.getLogger(CrcEngine.class);
    private static final int CHUNK = 64 * 1024;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;

    private final ModelContext ctx;
    private final ModelDma dma;
    private final RegisterBlock registers;
    private long ctrl;
    private boolean halted;
    private long ringBase;
    private long ringSize;
    private long head;
    private long completed;

    CrcEngine(ModelContext ctx) {
        this.ctx = ctx;
        this.dma = ctx.dma();
        this.registers = RegisterBlock.builder(ctx.function().bdf() + " crc BAR0")
                .constant("ID", REG_ID, 8, ID_VALUE)
                .register("CTRL", REG_CTRL, 8, () -> ctrl | (halted ? CTRL_HALTED : 0), this::control)
                .register("RING_BASE", REG_RING_BASE, 8, () -> ringBase, v -> ringBase = ctrl == 0 ? v & -CMD_SIZE : ringBase)
                .register("RING_SIZE", REG_RING_SIZE, 8, () -> ringSize,
                        v -> ringSize = ctrl == 0 && v >= 2 && v <= 4096 && Long.bitCount(v) == 1 ? v : ringSize)
                .readOnly("HEAD", REG_HEAD, 8, () -> head)
                .doorbell("DOORBELL", REG_DOORBELL, 8, this::doorbell)
                .readOnly("COMPLETED", REG_COMPLETED, 8, () -> completed)
                .build();
    }

    @Override
    public synchronized long read(long offset, int size) {
        return registers.read(offset, size);
    }

    @Override
    public synchronized void write(long offset, int size, long value) {
        registers.write(offset, size, value);
    }

    /** Every register back to its power-on value: disabled, no ring, nothing completed. */
    @Override
    public synchronized void reset(PciReset kind) {
        control(CTRL_RESET);
        ringBase = 0;
        ringSize = 0;
    }

    private void control(long value) {
        ctrl = value & CTRL_ENABLE;
        if ((value & CTRL_RESET) != 0) {
            ctrl = 0;
            halted = false;
            head = 0;
            completed = 0;
        }
    }

    /** Runs the commands from the head up to {@code tail}. */
    private void doorbell(long tail) {
        if (ctrl == 0 || halted || ringSize == 0) {
            return;
        }
        if (Long.compareUnsigned(tail - head, ringSize) > 0) {
            LOG.warn("{}: doorbell {} is more than a ring past head {}: halted", ctx.function().bdf(), tail, head);
            halted = true;
            return;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cmd = arena.allocate(CMD_SIZE, 8);
            MemorySegment buf = arena.allocate(CHUNK, 8);
            while (head != tail && !halted) {
                long at = ringBase + (head & (ringSize - 1)) * CMD_SIZE;
                halted = !dma.read(at, cmd).ok();
                if (!halted) {
                    cmd.set(U32, CMD_STATUS, execute(cmd, buf));
                    halted = !dma.write(at + CMD_RESULT, cmd.asSlice(CMD_RESULT, 4)).ok()
                            || !dma.write(at + CMD_STATUS, cmd.asSlice(CMD_STATUS, 4)).ok();
                }
                if (!halted) {
                    head++;
                    completed++;
                    if ((cmd.get(U32, CMD_FLAGS) & FLAG_INTERRUPT) != 0) {
                        raise();
                    }
                }
            }
        }
    }

    private int execute(MemorySegment cmd, MemorySegment buf) {
        long src = cmd.get(ValueLayout.JAVA_LONG_UNALIGNED, CMD_SRC);
        long len = Integer.toUnsignedLong(cmd.get(U32, CMD_LEN));
        cmd.set(U32, CMD_RESULT, 0);
        if (len == 0 || len > MAX_LENGTH || (cmd.get(U32, CMD_FLAGS) & ~FLAG_INTERRUPT) != 0
                || Long.compareUnsigned(src + len - 1, src) < 0) {
            return ST_BAD_COMMAND;
        }
        CRC32C crc = new CRC32C();
        for (long done = 0; done < len; done += CHUNK) {
            MemorySegment part = buf.asSlice(0, Math.min(CHUNK, len - done));
            if (dma.read(src + done, part) instanceof DmaStatus.Fault f) {
                LOG.debug("{}: source read fault: {}", ctx.function().bdf(), f.reason());
                return ST_READ_FAULT;
            }
            crc.update(part.asByteBuffer());
        }
        cmd.set(U32, CMD_RESULT, continued(cmd.get(U32, CMD_SEED), (int) crc.getValue(), len));
        return ST_OK;
    }

    /**
     * The CRC32C of the bytes before ({@code seed}) and then {@code length} bytes whose own CRC32C is {@code crc}:
     * CRC is affine, so it is {@code crc} xor the seed carried through {@code length} zero bytes.
     */
    static int continued(int seed, int crc, long length) {
        int s = seed;
        for (long bit = 0; bit < 8 * length && s != 0; bit++) {
            s = (s & 1) != 0 ? (s >>> 1) ^ 0x82F6_3B78 : s >>> 1; // reflected Castagnoli polynomial
        }
        return crc ^ s;
    }

    /** Signals the completion vector; with no interrupt mode enabled the message goes nowhere, as on a bus. */
    private void raise() {
        try {
            ctx.raise(IRQ_VECTOR);
        } catch (ErrnoException e) {
            LOG.warn("{}: completion interrupt lost: {}", ctx.function().bdf(), e.getMessage(), e);
        }
    }
}
