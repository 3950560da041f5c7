package dev.dmaplane.driver.crc.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.driver.crc.CrcOffload;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.irq.IrqReturn;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.driver.crc.model.CrcRegs.*;

/**
 * The crc driver bound to one engine. Probe in the order of a PCI driver: memory decoding, identify,
 * {@code dma_set_mask}, {@code pci_set_master}, one MSI-X vector with a threaded handler (devres-managed:
 * {@code pci_free_irq_vectors} runs after remove), the command ring in coherent memory, enable. Requests run one
 * at a time; remove waits for the one in flight and disables the engine before freeing its ring.
 */
final class CrcDevice implements CrcOffload, BoundDevice {
    private static final Logger LOG = LoggerFactory.getLogger(CrcDevice.class);
    private static final VarHandle STATUS = ValueLayout.JAVA_INT.varHandle();
    static final int RING = 64;

    private final PciFunction fn;
    private final Bar.Mmio regs;
    private final DmaApi dma;
    private final Duration timeout;
    private final IrqTrigger completion = new IrqTrigger();
    private CoherentBuffer ring;
    private long tail;

    private CrcDevice(PciFunction fn, Bar.Mmio regs, Duration timeout) {
        this.fn = fn;
        this.regs = regs;
        this.dma = fn.dma();
        this.timeout = timeout;
    }

    /**
     * Probes {@code fn}; on failure what it took is released (the vectors by devres).
     *
     * @throws ErrnoException {@code ENODEV} if BAR0 is not a register block reading {@code ID_VALUE}; what the
     *                        DMA API, the interrupt core or the engine refuse
     */
    static CrcDevice probe(PciFunction fn, Duration timeout) {
        Bar.Mmio regs = fn.bar(0).filter(b -> b.backing() instanceof Bar.Mmio).map(Bar::mmio)
                .orElseThrow(() -> new ErrnoException(Errno.ENODEV, fn.name() + ": no register BAR0, so no CRC engine"));
        CrcDevice d = new CrcDevice(fn, regs, timeout);
        try {
            fn.setMemorySpace(true);
            long id = regs.read(REG_ID, 8);
            if (id != ID_VALUE) {
                throw new ErrnoException(Errno.ENODEV, String.format("%s: REG_ID reads %#x, not a CRC engine", fn.name(), id));
            }
            d.dma.setDmaMask(-1L);
            fn.setMaster(true);
            IrqVectors.alloc(fn, 1, 1, IrqVectors.PCI_IRQ_MSIX).request(IRQ_VECTOR, null, vector -> {
                d.completion.signal();
                return IrqReturn.HANDLED;
            }, CrcDriver.NAME);
            d.ring = d.dma.allocCoherent((long) RING * CMD_SIZE);
            d.program();
            LOG.info("crc {}: {} commands at iova {}, completion by MSI-X", fn.name(), RING, Long.toHexString(d.ring.dmaAddress()));
            return d;
        } catch (RuntimeException e) {
            d.remove();
            throw e;
        }
    }

    /** Reset, ring base and size, enable, checked by reading back: at probe and to recover from a halt. */
    private void program() {
        regs.write(REG_CTRL, 8, CTRL_RESET);
        regs.write(REG_RING_BASE, 8, ring.dmaAddress());
        regs.write(REG_RING_SIZE, 8, RING);
        regs.write(REG_CTRL, 8, CTRL_ENABLE);
        long ctrl = regs.read(REG_CTRL, 8);
        if (regs.read(REG_RING_BASE, 8) != ring.dmaAddress() || regs.read(REG_RING_SIZE, 8) != RING || ctrl != CTRL_ENABLE) {
            throw new ErrnoException(Errno.EIO, String.format("%s: the engine did not take its ring (ctrl %#x)", fn.name(), ctrl));
        }
        tail = 0;
    }

    @Override
    public String device() {
        return fn.name();
    }

    @Override
    public synchronized int crc32c(long physAddr, int length, int seed) {
        if (ring == null) {
            throw new ErrnoException(Errno.ENODEV, fn.name() + ": the CRC engine was removed");
        }
        if (length < 1 || length > MAX_LENGTH) {
            throw new ErrnoException(Errno.EINVAL, "crc32c length " + length + " outside 1.." + MAX_LENGTH);
        }
        if ((regs.read(REG_CTRL, 8) & CTRL_HALTED) != 0) {
            program();
        }
        long bus = dma.mapSingle(physAddr, length, DmaDirection.TO_DEVICE);
        try {
            long offset = (tail & (RING - 1)) * CMD_SIZE;
            MemorySegment cmd = ring.cpu().asSlice(offset, CMD_SIZE);
            cmd.set(ValueLayout.JAVA_LONG, CMD_SRC, bus);
            cmd.set(ValueLayout.JAVA_INT, CMD_LEN, length);
            cmd.set(ValueLayout.JAVA_INT, CMD_SEED, seed);
            cmd.set(ValueLayout.JAVA_INT, CMD_FLAGS, FLAG_INTERRUPT);
            cmd.set(ValueLayout.JAVA_INT, CMD_COOKIE, (int) tail);
            STATUS.setRelease(ring.cpu(), offset + CMD_STATUS, ST_PENDING); // wmb(): the command before the doorbell
            regs.write(REG_DOORBELL, 8, ++tail);
            int st = await(offset + CMD_STATUS);
            if (st != ST_OK) {
                throw new ErrnoException(st == ST_BAD_COMMAND ? Errno.EINVAL : Errno.EIO, String.format(
                        "%s: crc32c of %d bytes at iova %#x ended with status %d", fn.name(), length, bus, st));
            }
            return cmd.get(ValueLayout.JAVA_INT, CMD_RESULT);
        } finally {
            dma.unmapSingle(bus, length, DmaDirection.TO_DEVICE);
        }
    }

    /** Sleeps on the completion interrupt until the status leaves {@code ST_PENDING}, within the timeout. */
    private int await(long statusOffset) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            int st = (int) STATUS.getAcquire(ring.cpu(), statusOffset);
            if (st != ST_PENDING) {
                return st;
            }
            if ((regs.read(REG_CTRL, 8) & CTRL_HALTED) != 0) {
                throw new ErrnoException(Errno.EIO, fn.name() + ": the CRC engine halted before completing command " + (tail - 1));
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new ErrnoException(Errno.ETIMEDOUT, String.format("%s: no completion within %d ms (head %d, tail %d)",
                        fn.name(), timeout.toMillis(), regs.read(REG_HEAD, 8), tail));
            }
            try {
                completion.await(left, TimeUnit.NANOSECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new ErrnoException(Errno.EINTR, fn.name() + ": interrupted waiting for the CRC engine", e);
            }
        }
    }

    /** Disables the engine, then frees its ring; bus mastering and decoding off. The vectors go by devres. */
    @Override
    public synchronized void remove() {
        if (ring != null) {
            try {
                regs.write(REG_CTRL, 8, 0);
                regs.write(REG_RING_BASE, 8, 0);
                dma.freeCoherent(ring);
            } catch (RuntimeException e) {
                LOG.error("crc {}: freeing the command ring failed", fn.name(), e);
            }
            ring = null;
        }
        fn.setMaster(false);
        fn.setMemorySpace(false);
    }
}
