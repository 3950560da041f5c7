package dev.dmaplane.dmabuf;

import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;

import java.lang.foreign.ValueLayout;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;

/** A test driver for the GPU's copy engine (BAR0): a coherent descriptor ring, submit and poll. */
final class CopyEngine implements AutoCloseable {
    private static final int RING = 8;

    private final PciFunction fn;
    private final Bar.Mmio regs;
    private final DmaApi dma;
    private final CoherentBuffer ring;
    private long tail;

    CopyEngine(PciFunction fn) {
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

    /** Copies {@code length} bytes between two bus addresses of the GPU; returns the status written back. */
    int copy(long src, long dst, int length) {
        return submit(src, dst, length, 0);
    }

    int submit(long src, long dst, int length, int flags) {
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

    void reset() {
        regs.write(REG_CTRL, 8, CTRL_RESET);
        regs.write(REG_RING_BASE, 8, ring.dmaAddress());
        regs.write(REG_RING_SIZE, 8, RING);
        regs.write(REG_CTRL, 8, CTRL_ENABLE);
        tail = 0;
    }

    @Override
    public void close() {
        regs.write(REG_CTRL, 8, CTRL_RESET);
        dma.freeCoherent(ring);
        fn.setMaster(false);
    }
}
