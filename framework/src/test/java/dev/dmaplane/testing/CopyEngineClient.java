package dev.dmaplane.testing;

import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;

import java.lang.foreign.ValueLayout;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;

/**
 * A minimal test driver for the GPU's copy engine (BAR0 of the {@code gpu} model): a coherent descriptor ring and
 * a submit call that returns the status the engine wrote back. Used by the framework's machine tests and, through
 * the framework's tests jar, by other modules' tests.
 */
public final class CopyEngineClient implements AutoCloseable {
    /** Descriptors in the ring. */
    public static final int RING = 8;

    private final PciFunction fn;
    private final Bar.Mmio regs;
    private final DmaApi dma;
    private final CoherentBuffer ring;
    private long tail;

    /**
     * Takes over the copy engine of {@code fn}: enables bus mastering, resets the engine and gives it a ring.
     *
     * @throws IllegalStateException if BAR0 of {@code fn} does not identify as a copy engine
     */
    public CopyEngineClient(PciFunction fn) {
        this.fn = fn;
        this.regs = fn.bar(0).orElseThrow().mmio();
        this.dma = fn.dma();
        fn.setMaster(true);
        if (regs.read(REG_ID, 8) != ID_VALUE) {
            throw new IllegalStateException("not a copy engine");
        }
        regs.write(REG_CTRL, 8, CTRL_RESET);
        ring = dma.allocCoherent((long) RING * DESC_SIZE);
        regs.write(REG_RING_BASE, 8, ring.dmaAddress());
        regs.write(REG_RING_SIZE, 8, RING);
        regs.write(REG_CTRL, 8, CTRL_ENABLE);
    }

    /** Submits one descriptor, rings the doorbell, and returns the status the engine wrote back. */
    public int submit(long src, long dst, int length, int flags) {
        long off = (tail % RING) * DESC_SIZE;
        var d = ring.cpu();
        d.set(ValueLayout.JAVA_LONG_UNALIGNED, off + DESC_SRC, src);
        d.set(ValueLayout.JAVA_LONG_UNALIGNED, off + DESC_DST, dst);
        d.set(ValueLayout.JAVA_INT_UNALIGNED, off + DESC_LEN, length);
        d.set(ValueLayout.JAVA_INT_UNALIGNED, off + DESC_FLAGS, flags);
        d.set(ValueLayout.JAVA_INT_UNALIGNED, off + DESC_STATUS, ST_PENDING);
        tail++;
        regs.write(REG_RING_TAIL, 8, tail);
        return d.get(ValueLayout.JAVA_INT_UNALIGNED, off + DESC_STATUS);
    }

    /** Copies {@code length} bytes between two bus addresses of the device; returns the status written back. */
    public int copy(long src, long dst, int length) {
        return submit(src, dst, length, 0);
    }

    /** Reads the 64-bit register at {@code reg} ({@code CopyEngineRegs.REG_*}). */
    public long read(int reg) {
        return regs.read(reg, 8);
    }

    /** Resets the engine, frees the ring and turns bus mastering off. */
    @Override
    public void close() {
        regs.write(REG_CTRL, 8, CTRL_RESET);
        dma.freeCoherent(ring);
        fn.setMaster(false);
    }
}
