package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import dev.dmaplane.vfio.nvme.NvmeStatus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;

/**
 * A submission and completion queue pair in the driver's pinned memory ({@code struct nvme_pcie_qpair},
 * {@code lib/nvme/nvme_pcie_common.c} and {@code nvme_pcie_qpair.c}): commands are written at the SQ tail and the
 * tail doorbell rung; completions are found by their phase tag at the CQ head, which the head doorbell returns to
 * the controller. Command identifiers are slots: at most {@code entries - 1} commands are outstanding, each with
 * its own PRP list page. Not thread-safe: one thread owns a queue pair, as in SPDK.
 */
public final class QueuePair implements AutoCloseable {
    /** What the owner of a queue pair does with each completion {@link #poll} finds. */
    @FunctionalInterface
    public interface CompletionHandler {
        /** Command {@code cid} completed with {@code status} (an {@link NvmeStatus} code, 0 on success), {@code dw0}. */
        void completed(int cid, int status, int dw0);
    }

    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final int qid;
    private final int entries;
    private final NvmeController ctrl;
    private final DmaRegion region;
    private final long sqOff;
    private final long cqOff;
    /** Offset of slot 0's PRP list page, or -1 without lists. */
    private final long prpOff;
    private final long sqDoorbell;
    private final long cqDoorbell;
    private final IrqTrigger irq;
    private final int[] free;
    private int freeTop;
    /** Whether each identifier is outstanding: a completion for one that is not is refused in constant time. */
    private final boolean[] inFlight;
    private int sqTail;
    /** The tail the SQ doorbell last said. */
    private int sqTailRung;
    /** Whether submissions wait for {@link #ringSubmissions()} instead of ringing each ({@code delay_cmd_submit}). */
    private boolean delaySubmit;
    private int cqHead;
    private boolean phase = true;
    private long submitted;
    private long completed;
    private boolean closed;

    QueuePair(NvmeController ctrl, int qid, int entries, boolean prpLists, IrqTrigger irq) {
        this.ctrl = ctrl;
        this.qid = qid;
        this.entries = entries;
        this.irq = irq;
        long sqBytes = pageAlign((long) entries * NvmeCommand.SIZE);
        long cqBytes = pageAlign((long) entries * NvmeCompletion.SIZE);
        long prpBytes = prpLists ? (entries - 1L) * DmaRegion.PAGE : 0;
        this.region = DmaRegion.allocate(ctrl.frontEnd(), sqBytes + cqBytes + prpBytes);
        this.sqOff = 0;
        this.cqOff = sqBytes;
        this.prpOff = prpLists ? sqBytes + cqBytes : -1;
        this.sqDoorbell = ctrl.sqDoorbell(qid);
        this.cqDoorbell = ctrl.cqDoorbell(qid);
        this.free = new int[entries - 1];
        for (int i = 0; i < free.length; i++) {
            free[i] = free.length - 1 - i;
        }
        this.freeTop = free.length;
        this.inFlight = new boolean[free.length];
    }

    private static long pageAlign(long n) {
        return (n + DmaRegion.PAGE - 1) / DmaRegion.PAGE * DmaRegion.PAGE;
    }

    /** The queue identifier (0 for the admin queue pair). */
    public int qid() {
        return qid;
    }

    /** Entries in each queue. */
    public int entries() {
        return entries;
    }

    /** The most commands that can be outstanding at once: one entry of a queue always stays empty. */
    public int capacity() {
        return entries - 1;
    }

    /** Commands submitted and not yet completed. */
    public int outstanding() {
        return free.length - freeTop;
    }

    /**
     * The identifier the next submission will get (the most recently freed one), so that a caller can fill the
     * buffer that goes with it first.
     *
     * @throws ErrnoException {@code EAGAIN} when none is free
     */
    public int nextCid() {
        if (freeTop == 0) {
            throw new ErrnoException(Errno.EAGAIN, "queue pair " + qid + ": all " + capacity()
                    + " command slots outstanding");
        }
        return free[freeTop - 1];
    }

    /** IOVA of the submission queue (Create I/O SQ's PRP1, or ASQ). */
    long sqIova() {
        return region.iova(sqOff);
    }

    /** IOVA of the completion queue (Create I/O CQ's PRP1, or ACQ). */
    long cqIova() {
        return region.iova(cqOff);
    }

    /**
     * Writes {@code command} with a free identifier at the tail and rings the tail doorbell: the identifier.
     *
     * @throws ErrnoException {@code EAGAIN} when {@link #capacity()} commands are outstanding ({@code -EAGAIN} of
     *                        {@code nvme_qpair_submit_request} without free trackers)
     */
    public int submit(NvmeCommand command) {
        int cid = take();
        write(command.withCid(cid));
        return cid;
    }

    private int take() {
        checkOpen();
        if (freeTop == 0) {
            throw new ErrnoException(Errno.EAGAIN, "queue pair " + qid + ": all " + capacity()
                    + " command slots outstanding");
        }
        int cid = free[--freeTop];
        inFlight[cid] = true;
        return cid;
    }

    private void write(NvmeCommand command) {
        long at = sqOff + (long) sqTail * NvmeCommand.SIZE;
        command.writeTo(region.page(at).asSlice(at % DmaRegion.PAGE, NvmeCommand.SIZE));
        sqTail = (sqTail + 1) % entries;
        submitted++;
        if (!delaySubmit) {
            ringSubmissions();
        }
    }

    /**
     * With {@code delay}, submissions only write their entries and the SQ tail doorbell is rung by
     * {@link #ringSubmissions()} or the next {@link #poll}, once for all of them (SPDK's {@code delay_cmd_submit}
     * in {@code nvme_pcie_qpair_submit_tracker}); without, each submission rings it.
     */
    public void delaySubmissions(boolean delay) {
        checkOpen();
        this.delaySubmit = delay;
        if (!delay) {
            ringSubmissions();
        }
    }

    /** Rings the SQ tail doorbell if entries were written since it was last rung. */
    public void ringSubmissions() {
        checkOpen();
        if (sqTail != sqTailRung) {
            sqTailRung = sqTail;
            ctrl.doorbell(sqDoorbell, sqTail);
        }
    }

    /**
     * A Read or Write of {@code blocks} logical blocks from {@code slba} into or out of {@code bytes} of
     * {@code buffer} at {@code offset}: PRP1 at the first byte, PRP2 the second page or a PRP list in the command's
     * own list page ({@code nvme_pcie_qpair_build_contig_request}). Returns the identifier.
     *
     * @throws ErrnoException {@code EINVAL} for a transfer needing a PRP list on a queue pair without lists, or one
     *                        past a list page (512 entries); {@code EAGAIN} when full
     */
    public int submitIo(int opcode, int nsid, long slba, int blocks, DmaRegion buffer, long offset, long bytes) {
        return submitIo(opcode, nsid, slba, blocks, buffer.iova(offset), bytes);
    }

    /**
     * As {@link #submitIo(int, int, long, int, DmaRegion, long, long)}, to {@code bytes} at IOVA {@code iova} of
     * memory the front end mapped some other way (a dma-buf's IOAS mapping, for GPUDirect Storage).
     */
    public int submitIo(int opcode, int nsid, long slba, int blocks, long iova, long bytes) {
        long first = DmaRegion.PAGE - iova % DmaRegion.PAGE;
        long prp2 = 0;
        int cid;
        if (bytes <= first) {
            cid = take();
        } else if (bytes <= first + DmaRegion.PAGE) {
            cid = take();
            prp2 = iova + first;
        } else {
            long pages = (bytes - first + DmaRegion.PAGE - 1) / DmaRegion.PAGE;
            if (prpOff < 0 || pages > DmaRegion.PAGE / 8) {
                throw new ErrnoException(Errno.EINVAL, "queue pair " + qid + ": " + bytes + " bytes need a PRP list of "
                        + pages + " entries" + (prpOff < 0 ? ", and this queue pair has no list pages" : ", over one page"));
            }
            cid = take();
            long list = prpOff + cid * DmaRegion.PAGE;
            MemorySegment page = region.page(list);
            for (int i = 0; i < pages; i++) {
                page.set(U64, 8L * i, iova + first + i * DmaRegion.PAGE);
            }
            prp2 = region.iova(list);
        }
        write(NvmeCommand.readWrite(opcode, cid, nsid, slba, blocks, iova, prp2));
        return cid;
    }

    /**
     * Takes up to {@code max} completions whose phase tag is current, hands each to {@code handler}, frees their
     * identifiers and rings the head doorbell once: the number taken ({@code nvme_pcie_qpair_process_completions}).
     * Delayed submissions are rung first.
     */
    public int poll(CompletionHandler handler, int max) {
        ringSubmissions();
        int n = 0;
        while (n < max) {
            long at = cqOff + (long) cqHead * NvmeCompletion.SIZE;
            MemorySegment page = region.page(at);
            long in = at % DmaRegion.PAGE;
            short sf = page.get(U16, in + NvmeCompletion.OFF_STATUS);
            if (((sf & 1) != 0) != phase) {
                break;
            }
            int cid = Short.toUnsignedInt(page.get(U16, in + NvmeCompletion.OFF_CID));
            int dw0 = page.get(U32, in + NvmeCompletion.OFF_DW0);
            cqHead++;
            if (cqHead == entries) {
                cqHead = 0;
                phase = !phase;
            }
            if (cid >= free.length || !inFlight[cid]) {
                throw new ErrnoException(Errno.EIO, "queue pair " + qid + ": completion for command " + cid
                        + ", which is not outstanding");
            }
            inFlight[cid] = false;
            free[freeTop++] = cid;
            completed++;
            n++;
            handler.completed(cid, (Short.toUnsignedInt(sf) >>> 1) & NvmeStatus.CODE_MASK, dw0);
        }
        if (n > 0) {
            ctrl.doorbell(cqDoorbell, cqHead);
        }
        return n;
    }

    /**
     * With MSI-X: waits up to {@code timeout} for the queue's vector to fire (a read of its eventfd); the count read,
     * 0 when the time ran out.
     *
     * @throws ErrnoException {@code EINVAL} for a queue pair polled without an interrupt
     */
    public long awaitInterrupt(long timeout, TimeUnit unit) throws InterruptedException {
        if (irq == null) {
            throw new ErrnoException(Errno.EINVAL, "queue pair " + qid + " completes by polling: no interrupt to wait on");
        }
        return irq.await(timeout, unit);
    }

    /** Whether completions raise the queue's MSI-X vector. */
    public boolean interrupts() {
        return irq != null;
    }

    /** Commands submitted over the queue pair's life. */
    public long submitted() {
        return submitted;
    }

    /** Completions taken over the queue pair's life. */
    public long completed() {
        return completed;
    }

    private void checkOpen() {
        if (closed) {
            throw new ErrnoException(Errno.EBADF, "queue pair " + qid + " is closed");
        }
    }

    /** Deletes the queues on the controller (I/O queue pairs) and unmaps their memory. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            ctrl.released(this);
        } finally {
            region.close();
        }
    }
}
