package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.pci.Bar;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;

/**
 * The copy engine as a DMA channel ({@code struct dma_chan} of a dmaengine driver such as ioatdma): a descriptor
 * ring in coherent memory ({@code dma_alloc_coherent}), programmed through BAR0, fed by writing descriptors and
 * ringing the tail doorbell. Completion is seen either by taking the engine's completion interrupt (each descriptor
 * carries {@code FLAG_INTERRUPT}; the interrupt handler signals an {@link IrqTrigger} the submitter waits on, as a
 * dmaengine callback completes a {@code struct completion}) or, when the channel is polled, by polling the status
 * the engine writes back into each descriptor; both with a deadline: a dead or halted engine makes {@link #submit}
 * fail, never hang.
 *
 * <p>Not thread-safe: one channel belongs to one dmatest run, as a channel belongs to one dmatest thread.
 */
final class CopyEngineChannel implements AutoCloseable {
    private static final VarHandle STATUS = ValueLayout.JAVA_INT.varHandle();

    private final Bar.Mmio regs;
    private final DmaApi dma;
    private final int entries;
    private final Duration timeout;
    /** Signalled by the completion interrupt; null for a polled channel. */
    private final IrqTrigger completion;
    private CoherentBuffer ring;
    /** Free-running index one past the last descriptor written; the engine's head follows it. */
    private long tail;

    private CopyEngineChannel(Bar.Mmio regs, DmaApi dma, int entries, Duration timeout, IrqTrigger completion) {
        this.regs = regs;
        this.dma = dma;
        this.entries = entries;
        this.timeout = timeout;
        this.completion = completion;
    }

    /** Opens a polled channel, see {@link #open(Bar.Mmio, DmaApi, int, Duration, IrqTrigger)}. */
    static CopyEngineChannel open(Bar.Mmio regs, DmaApi dma, int entries, Duration timeout) {
        return open(regs, dma, entries, timeout, null);
    }

    /**
     * Resets the engine, allocates the ring, programs {@code REG_RING_BASE}/{@code REG_RING_SIZE} and enables the
     * engine. On failure nothing stays allocated.
     *
     * @param entries    ring size, a power of two 2..4096
     * @param completion what the engine's completion interrupt signals, or null to poll the status words
     * @throws ErrnoException {@code EIO} if the engine does not take the ring or does not come up enabled
     */
    static CopyEngineChannel open(Bar.Mmio regs, DmaApi dma, int entries, Duration timeout, IrqTrigger completion) {
        if (entries < 2 || entries > 4096 || Integer.bitCount(entries) != 1) {
            throw new ErrnoException(Errno.EINVAL, "ring size must be a power of two 2..4096, not " + entries);
        }
        CopyEngineChannel ch = new CopyEngineChannel(regs, dma, entries, timeout, completion);
        ch.ring = dma.allocCoherent((long) entries * DESC_SIZE);
        try {
            ch.start();
            return ch;
        } catch (RuntimeException | Error e) {
            ch.close();
            throw e;
        }
    }

    /** {@code CTRL_RESET}, ring base and size (checked by reading them back), {@code CTRL_ENABLE}. */
    private void start() {
        regs.write(REG_CTRL, 8, CTRL_RESET);
        regs.write(REG_RING_BASE, 8, ring.dmaAddress());
        regs.write(REG_RING_SIZE, 8, entries);
        if (regs.read(REG_RING_BASE, 8) != ring.dmaAddress() || regs.read(REG_RING_SIZE, 8) != entries) {
            throw new ErrnoException(Errno.EIO, String.format("copy engine did not take the ring: base 0x%x size %d read back",
                    regs.read(REG_RING_BASE, 8), regs.read(REG_RING_SIZE, 8)));
        }
        regs.write(REG_CTRL, 8, CTRL_ENABLE);
        if ((regs.read(REG_STATUS, 8) & STATUS_ENABLED) == 0) {
            throw new ErrnoException(Errno.EIO, "copy engine did not come up enabled: status 0x"
                    + Long.toHexString(regs.read(REG_STATUS, 8)));
        }
        tail = 0;
    }

    /** Bus address of the descriptor ring. */
    long ringIova() {
        return ring.dmaAddress();
    }

    /** Whether completion is seen by polling rather than by the completion interrupt. */
    boolean polled() {
        return completion == null;
    }

    /**
     * Writes one descriptor, rings the doorbell and waits, by interrupt or by polling, until the engine has written
     * its status back.
     *
     * @param source      bus address to read, or for {@link dev.dmaplane.hw.copyengine.CopyEngineRegs#FLAG_FILL}
     *                    the fill byte
     * @param destination bus address to write
     * @return the status the engine wrote ({@code ST_OK}, {@code ST_READ_FAULT} ...)
     * @throws ErrnoException {@code EIO} if the engine is halted or stops without completing it,
     *                        {@code ETIMEDOUT} if it has not completed it within the timeout, {@code EBUSY} if the
     *                        ring is full, {@code EINTR} if the waiting thread is interrupted
     */
    int submit(long source, long destination, long length, int flags, int cookie) {
        if (halted()) {
            throw new ErrnoException(Errno.EIO, "copy engine is halted (fault at 0x" + Long.toHexString(faultAddress())
                    + "); reset it first");
        }
        if (tail - regs.read(REG_RING_HEAD, 8) >= entries) {
            throw new ErrnoException(Errno.EBUSY, "descriptor ring full: " + entries + " outstanding");
        }
        long offset = (tail & (entries - 1)) * (long) DESC_SIZE;
        MemorySegment desc = ring.cpu().asSlice(offset, DESC_SIZE);
        desc.set(ValueLayout.JAVA_LONG, DESC_SRC, source);
        desc.set(ValueLayout.JAVA_LONG, DESC_DST, destination);
        desc.set(ValueLayout.JAVA_INT, DESC_LEN, (int) length);
        desc.set(ValueLayout.JAVA_INT, DESC_FLAGS, polled() ? flags : flags | FLAG_INTERRUPT);
        desc.set(ValueLayout.JAVA_INT, DESC_COOKIE, cookie);
        STATUS.setRelease(ring.cpu(), offset + DESC_STATUS, ST_PENDING); // wmb(): the descriptor before the doorbell
        tail++;
        regs.write(REG_RING_TAIL, 8, tail);
        return polled() ? poll(offset + DESC_STATUS) : awaitInterrupt(offset + DESC_STATUS);
    }

    /**
     * Sleeps on the completion trigger until the descriptor's status leaves {@code ST_PENDING}; each wake consumes
     * the interrupts signalled so far. A halt before the status write-back (a faulted descriptor fetch raises
     * nothing) fails at once rather than at the deadline.
     */
    private int awaitInterrupt(long statusOffset) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            if (status(statusOffset) == ST_PENDING && halted()) {
                throw haltedBeforeCompletion();
            }
            long signalled;
            try {
                signalled = completion.await(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new ErrnoException(Errno.EINTR, "interrupted waiting for the copy engine's completion interrupt", e);
            }
            int st = status(statusOffset);
            if (st != ST_PENDING) {
                return st;
            }
            if (signalled == 0) {
                throw timedOut("no completion interrupt");
            }
        }
    }

    /** Polls a descriptor's status word (the device writes it by DMA) until it leaves {@code ST_PENDING}. */
    private int poll(long statusOffset) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            int st = status(statusOffset);
            if (st != ST_PENDING) {
                return st;
            }
            if (halted()) {
                throw haltedBeforeCompletion();
            }
            if (System.nanoTime() - deadline >= 0) {
                throw timedOut("polled");
            }
            Thread.onSpinWait();
        }
    }

    private int status(long statusOffset) {
        return (int) STATUS.getAcquire(ring.cpu(), statusOffset);
    }

    private ErrnoException haltedBeforeCompletion() {
        return new ErrnoException(Errno.EIO, "copy engine halted before completing the descriptor (fault at 0x"
                + Long.toHexString(faultAddress()) + ")");
    }

    private ErrnoException timedOut(String how) {
        return new ErrnoException(Errno.ETIMEDOUT, "copy engine did not complete the descriptor within "
                + timeout.toMillis() + " ms, " + how + " (head " + regs.read(REG_RING_HEAD, 8) + ", tail " + tail + ")");
    }

    /** Whether the engine stopped on an error ({@code STATUS_HALTED}). */
    boolean halted() {
        return (regs.read(REG_STATUS, 8) & STATUS_HALTED) != 0;
    }

    /** {@code REG_FAULT_ADDR}: the bus address of the last access that faulted. */
    long faultAddress() {
        return regs.read(REG_FAULT_ADDR, 8);
    }

    /** Descriptors completed since the last reset ({@code REG_COMPLETED}). */
    long completed() {
        return regs.read(REG_COMPLETED, 8);
    }

    /** Recovers from a halt: reset clears the halt and the ring indices, then the ring is programmed again. */
    void reset() {
        start();
    }

    /**
     * Stops the engine, then frees the ring: disabled first, so that it can no longer fetch from memory that is
     * about to go back to the allocator; the ring base is cleared while disabled. Idempotent.
     */
    @Override
    public void close() {
        if (ring == null) {
            return;
        }
        try {
            regs.write(REG_CTRL, 8, 0);
            regs.write(REG_RING_BASE, 8, 0);
        } finally {
            CoherentBuffer r = ring;
            ring = null;
            dma.freeCoherent(r);
        }
    }
}
