package dev.dmaplane.hw.impl;

import dev.dmaplane.hw.DmaStatus;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.hw.ModelDma;
import dev.dmaplane.pci.MmioHandler;
import dev.dmaplane.pci.PciReset;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;

/**
 * The emulated copy engine behind a function's BAR0 (see {@link dev.dmaplane.hw.copyengine.CopyEngineRegs}).
 * Every descriptor fetch, source read, destination write and status write-back is a DMA through the function's
 * bus master ({@link ModelDma}), so the IOMMU and dma-debug see each one. Processing runs when the doorbell is
 * written; a descriptor asking for an interrupt signals vector 0 (MSI-X, MSI or INTx, as enabled) on the writing thread once it
 * is done. Work happens only inside MMIO writes, under this object's lock, so reset waits for it.
 */
final class CopyEngine implements MmioHandler, ModelDevice {
    private static final int CHUNK = 64 * 1024;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;

    private final ModelContext ctx;
    private final ModelDma dma;
    private long ctrl;
    private boolean halted;
    private long ringBase;
    private long ringSize;
    private long head;
    private long completed;
    private long faultAddr;

    CopyEngine(ModelContext ctx) {
        this.ctx = ctx;
        this.dma = ctx.dma();
    }

    /** Every register back to its power-on value: disabled, no ring, nothing completed. */
    @Override
    public synchronized void reset(PciReset kind) {
        ctrl = 0;
        halted = false;
        ringBase = 0;
        ringSize = 0;
        head = 0;
        completed = 0;
        faultAddr = 0;
    }

    @Override
    public synchronized long read(long offset, int size) {
        return switch ((int) offset) {
            case REG_ID -> ID_VALUE;
            case REG_STATUS -> ((ctrl & CTRL_ENABLE) != 0 ? STATUS_ENABLED : 0) | (halted ? STATUS_HALTED : 0);
            case REG_CTRL -> ctrl;
            case REG_RING_BASE -> ringBase;
            case REG_RING_SIZE -> ringSize;
            case REG_RING_HEAD -> head;
            case REG_COMPLETED -> completed;
            case REG_FAULT_ADDR -> faultAddr;
            default -> 0xFFFF_FFFF_FFFF_FFFFL >>> (64 - 8 * size); // unimplemented registers read as all-ones
        };
    }

    @Override
    public synchronized void write(long offset, int size, long value) {
        switch ((int) offset) {
            case REG_CTRL -> {
                if ((value & CTRL_RESET) != 0) {
                    ctrl = 0;
                    halted = false;
                    head = 0;
                    completed = 0;
                    faultAddr = 0;
                } else {
                    ctrl = value & CTRL_ENABLE;
                }
            }
            case REG_RING_BASE -> {
                if ((ctrl & CTRL_ENABLE) == 0) {
                    ringBase = value;
                }
            }
            case REG_RING_SIZE -> {
                if ((ctrl & CTRL_ENABLE) == 0 && value >= 2 && value <= 4096 && Long.bitCount(value) == 1) {
                    ringSize = value;
                }
            }
            case REG_RING_TAIL -> process(value);
            default -> {
                // writes to read-only or unimplemented registers are dropped, as hardware does
            }
        }
    }

    private void process(long tail) {
        if ((ctrl & CTRL_ENABLE) == 0 || halted || ringSize == 0) {
            return;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment desc = arena.allocate(DESC_SIZE, 8);
            MemorySegment buf = arena.allocate(CHUNK, 64);
            while (head != tail && !halted) {
                long descAddr = ringBase + (head & (ringSize - 1)) * DESC_SIZE;
                if (!ok(dma.read(descAddr, desc))) {
                    return;
                }
                int status = execute(desc, buf);
                desc.set(U32, DESC_STATUS, status);
                boolean written = ok(dma.write(descAddr + DESC_STATUS, desc.asSlice(DESC_STATUS, 4)));
                if ((desc.get(U32, DESC_FLAGS) & FLAG_INTERRUPT) != 0) {
                    ctx.raise(IRQ_VECTOR);
                }
                if (!written) {
                    return;
                }
                head++;
                completed++;
                if (status != ST_OK) {
                    halted = true;
                }
            }
        }
    }

    private int execute(MemorySegment desc, MemorySegment buf) {
        long src = desc.get(U64, DESC_SRC);
        long dst = desc.get(U64, DESC_DST);
        long len = Integer.toUnsignedLong(desc.get(U32, DESC_LEN));
        int flags = desc.get(U32, DESC_FLAGS);
        if (len == 0 || len > MAX_LENGTH || (flags & ~(FLAG_FILL | FLAG_INTERRUPT)) != 0) {
            return ST_BAD_DESC;
        }
        if ((flags & FLAG_FILL) != 0) {
            buf.fill((byte) src);
        }
        for (long done = 0; done < len; done += CHUNK) {
            int n = (int) Math.min(CHUNK, len - done);
            MemorySegment part = buf.asSlice(0, n);
            if ((flags & FLAG_FILL) == 0 && !ok(dma.read(src + done, part))) {
                return ST_READ_FAULT;
            }
            if (!ok(dma.write(dst + done, part))) {
                return ST_WRITE_FAULT;
            }
        }
        return ST_OK;
    }

    /** Whether a DMA went through; a refused one records the fault address and halts the engine. */
    private boolean ok(DmaStatus st) {
        if (st instanceof DmaStatus.Fault f) {
            faultAddr = f.busAddr();
            halted = true;
            return false;
        }
        return true;
    }
}
