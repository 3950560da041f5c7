package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeStatus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * One spdk_nvme_perf worker ({@code work_fn}, {@code submit_single_io}, {@code io_complete}): keeps
 * {@code queueDepth} I/Os outstanding on its own queue pair until the run time ends, then drains. It works on its
 * own slice of the namespace, so its data checks are exact: each written block carries its LBA and the write's
 * sequence number in its first 16 bytes and a fixed pattern after; a read block must be all zeroes (never written),
 * or carry its own LBA and the pattern, and the sequence of the last write this worker completed there. Every read's
 * first block header is checked, and one read in {@link #FULL_CHECK_EVERY} completely. No two outstanding I/Os of a
 * worker touch the same blocks.
 * <p>
 * The reads a poll reaped are checked together once it returns, before the next submission reuses their buffers:
 * first the header of each is loaded, then each is compared. The first load of a block is a cache miss on the
 * lines the controller's engine just wrote from another CPU, the main cost of the check; loaded one after another,
 * independent of each other, these misses overlap instead of each waiting for the last.
 */
final class PerfWorker implements Runnable, QueuePair.CompletionHandler {
    /** One read in this many has every byte checked. */
    static final int FULL_CHECK_EVERY = 16;
    /** How long draining the outstanding I/Os after the run time may take. */
    static final long DRAIN_TIMEOUT_MS = 5_000;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int HEADER = 16;

    private final int core;
    private final QueuePair qp;
    private final PerfOptions options;
    private final int blockSize;
    private final int blocksPerIo;
    private final long sliceStart;
    private final int sliceIos;
    private final DmaRegion readBufs;
    private final DmaRegion writeBufs;
    private final CountDownLatch start;
    private final long[] submitNs;
    private final int[] cidIo;
    private final long[] cidSeq;
    private final boolean[] cidRead;
    private final long[] writtenSeq;
    private final byte[] inflight;
    private final SplittableRandom rnd;
    /**
     * The reads the last poll reaped, to be checked: identifier, I/O, the header words of its first block, and the
     * sequence of the last write completed there.
     */
    private final int[] reapedCid;
    private final int[] reapedIo;
    private final long[] reapedLba;
    private final long[] reapedSeq;
    private final long[] reapedExpect;
    private int reaped;
    private final byte[] pattern;
    /** {@link #pattern} as a segment, and a block of zeroes: full checks compare in place, nothing copied. */
    private final MemorySegment patternBlock;
    private final MemorySegment zeroBlock;
    private int nextSeqIo;
    private long seq;
    /**
     * When the poll under way found its first completion, 0 before: one clock read per poll, not per I/O. The
     * submissions of a refill are stamped with the time it started, read once too: they reach the controller
     * together, at the doorbell of the next poll.
     */
    private long reapNs;
    /** Whether completions count: not during the warm-up and the drain. */
    private boolean timing;
    private long ios;
    private long bytes;
    private long reads;
    private long writes;
    private long verified;
    private long totalLat;
    private long minLat = Long.MAX_VALUE;
    private long maxLat;
    private long elapsedNs;
    private volatile RuntimeException failure;

    PerfWorker(int core, int index, int workers, NvmeController ctrl, QueuePair qp, PerfOptions options,
               CountDownLatch start) {
        this.core = core;
        this.qp = qp;
        this.options = options;
        this.start = start;
        NvmeIdentity id = ctrl.identity();
        this.blockSize = id.blockSize();
        if (options.ioSize() % blockSize != 0) {
            throw new ErrnoException(Errno.EINVAL, "-o " + options.ioSize() + ": not a multiple of the namespace's "
                    + blockSize + "-byte blocks");
        }
        this.blocksPerIo = options.ioSize() / blockSize;
        long totalIos = id.blocks() / blocksPerIo;
        long slice = totalIos / workers;
        if (slice < 2L * options.queueDepth()) {
            throw new ErrnoException(Errno.EINVAL, "-q " + options.queueDepth() + " -o " + options.ioSize() + ": the "
                    + id.namespaceBytes() + "-byte namespace shared by " + workers + " workers is too small");
        }
        this.sliceIos = (int) Math.min(slice, Integer.MAX_VALUE / 2);
        this.sliceStart = (long) index * sliceIos;
        int slots = qp.capacity();
        this.readBufs = DmaRegion.allocate(ctrl.frontEnd(), (long) slots * options.ioSize());
        DmaRegion w;
        try {
            w = DmaRegion.allocate(ctrl.frontEnd(), (long) slots * options.ioSize());
        } catch (RuntimeException e) {
            readBufs.close();
            throw e;
        }
        this.writeBufs = w;
        this.submitNs = new long[slots];
        this.cidIo = new int[slots];
        this.cidSeq = new long[slots];
        this.cidRead = new boolean[slots];
        this.writtenSeq = new long[sliceIos];
        this.inflight = new byte[sliceIos];
        this.reapedCid = new int[slots];
        this.reapedIo = new int[slots];
        this.reapedLba = new long[slots];
        this.reapedSeq = new long[slots];
        this.reapedExpect = new long[slots];
        this.rnd = new SplittableRandom(0x5eed_0000L + core);
        this.pattern = new byte[blockSize];
        for (int j = HEADER; j < blockSize; j++) {
            pattern[j] = (byte) (j * 31 + 7);
        }
        this.patternBlock = MemorySegment.ofArray(pattern);
        this.zeroBlock = MemorySegment.ofArray(new byte[blockSize]);
        if (options.workload().writes) {
            MemorySegment p = MemorySegment.ofArray(pattern);
            for (long off = 0; off < writeBufs.length(); off += blockSize) {
                writeBufs.write(off, p);
            }
        }
    }

    /** The failure that ended the worker early, or null. */
    RuntimeException failure() {
        return failure;
    }

    WorkerResult result() {
        return new WorkerResult(core, ios, bytes, elapsedNs, totalLat, ios == 0 ? 0 : minLat, maxLat, reads, writes,
                verified);
    }

    @Override
    public void run() {
        try {
            qp.delaySubmissions(true);
            start.await();
            timing = false;
            long warm = System.nanoTime();
            keepBusyUntil(warm + options.warmup().toNanos());
            timing = true;
            long t0 = System.nanoTime();
            elapsedNs = keepBusyUntil(t0 + options.time().toNanos()) - t0;
            timing = false;
            drain();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            failure = new ErrnoException(Errno.EINTR, "nvme perf: worker on core " + core + " interrupted", e);
        } catch (RuntimeException e) {
            failure = e;
        }
    }

    /** Keeps the queue full until {@code end}; the time it stopped. */
    private long keepBusyUntil(long end) throws InterruptedException {
        long now = System.nanoTime();
        while (now < end) {
            while (qp.outstanding() < options.queueDepth()) {
                submit(now);
            }
            reapNs = 0;
            int n = qp.poll(this, options.queueDepth());
            checkReaped();
            if (n == 0) {
                idle();
            }
            now = System.nanoTime();
        }
        return now;
    }

    /**
     * Nothing completed: wait on the vector's eventfd with MSI-X; when polled, give the CPU up for a moment
     * ({@link Thread#yield}), since the controller here is a thread on the same CPUs as the poller, not silicon of
     * its own as under SPDK, and a poller that never yields delays the completions it waits for.
     */
    private void idle() throws InterruptedException {
        if (qp.interrupts()) {
            qp.awaitInterrupt(1, TimeUnit.MILLISECONDS);
        } else {
            Thread.yield();
        }
    }

    private void drain() throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(DRAIN_TIMEOUT_MS);
        while (qp.outstanding() > 0) {
            reapNs = 0;
            int n = qp.poll(this, options.queueDepth());
            checkReaped();
            if (n == 0) {
                if (System.nanoTime() > deadline) {
                    throw new ErrnoException(Errno.EIO, "nvme perf: worker on core " + core + ": " + qp.outstanding()
                            + " I/Os not completed " + DRAIN_TIMEOUT_MS + " ms after the run");
                }
                idle();
            }
        }
    }

    private boolean nextIsRead() {
        Workload w = options.workload();
        if (!w.mixed()) {
            return w.reads;
        }
        return rnd.nextInt(100) < options.rwMixRead();
    }

    private int nextIo() {
        if (options.workload().random) {
            int io;
            do {
                io = rnd.nextInt(sliceIos);
            } while (inflight[io] != 0);
            return io;
        }
        int io = nextSeqIo;
        nextSeqIo = nextSeqIo + 1 == sliceIos ? 0 : nextSeqIo + 1;
        return io;
    }

    /** Submits the next I/O, its latency counted from {@code now}. */
    private void submit(long now) {
        boolean read = nextIsRead();
        int io = nextIo();
        long slba = (sliceStart + io) * blocksPerIo;
        int cid;
        long s = 0;
        if (read) {
            cid = qp.submitIo(NvmeCommand.NVM_READ, NvmeController.NSID, slba, blocksPerIo, readBufs,
                    slotOffsetForNext(), options.ioSize());
        } else {
            s = ++seq;
            long off = slotOffsetForNext();
            for (int b = 0; b < blocksPerIo; b++) {
                MemorySegment page = writeBufs.page(off + (long) b * blockSize);
                long in = (off + (long) b * blockSize) % DmaRegion.PAGE;
                page.set(U64, in, slba + b);
                page.set(U64, in + 8, s);
            }
            cid = qp.submitIo(NvmeCommand.NVM_WRITE, NvmeController.NSID, slba, blocksPerIo, writeBufs, off,
                    options.ioSize());
        }
        submitNs[cid] = now;
        cidIo[cid] = io;
        cidSeq[cid] = s;
        cidRead[cid] = read;
        inflight[io]++;
    }

    /**
     * The buffer offset for the command about to be submitted: the queue pair hands out the most recently freed
     * identifier, so its slot is known before the submission ({@link QueuePair#nextCid()}).
     */
    private long slotOffsetForNext() {
        return (long) qp.nextCid() * options.ioSize();
    }

    @Override
    public void completed(int cid, int status, int dw0) {
        if (reapNs == 0) {
            reapNs = System.nanoTime();
        }
        long lat = reapNs - submitNs[cid];
        int io = cidIo[cid];
        inflight[io]--;
        if (status != NvmeStatus.SUCCESS) {
            throw new ErrnoException(Errno.EIO, "nvme perf: " + (cidRead[cid] ? "read" : "write") + " of LBA "
                    + (sliceStart + io) * blocksPerIo + " failed: " + NvmeStatus.name(status));
        }
        if (cidRead[cid]) {
            reapedCid[reaped] = cid;
            reapedIo[reaped++] = io;
        } else {
            writtenSeq[io] = cidSeq[cid];
        }
        if (!timing) {
            return;
        }
        ios++;
        bytes += options.ioSize();
        if (cidRead[cid]) {
            reads++;
        } else {
            writes++;
        }
        totalLat += lat;
        minLat = Math.min(minLat, lat);
        maxLat = Math.max(maxLat, lat);
    }

    /**
     * Checks the reads the last poll reaped: their first headers and the last write sequences of their blocks (an
     * array of a long per I/O of the slice, 2 MiB for a 1 GiB namespace, so another miss) loaded together, then each
     * read compared.
     */
    private void checkReaped() {
        int n = reaped;
        for (int i = 0; i < n; i++) {
            long at = (long) reapedCid[i] * options.ioSize();
            MemorySegment page = readBufs.page(at);
            long in = at % DmaRegion.PAGE;
            reapedLba[i] = page.get(U64, in);
            reapedSeq[i] = page.get(U64, in + 8);
            reapedExpect[i] = writtenSeq[reapedIo[i]];
        }
        reaped = 0;
        for (int i = 0; i < n; i++) {
            check(reapedCid[i], reapedIo[i], reapedLba[i], reapedSeq[i], reapedExpect[i]);
        }
    }

    /**
     * Checks the read of I/O {@code io} in {@code cid}'s buffer; its first block's header is {@code lba0},
     * {@code seq0}, and {@code expect} the sequence of the last write completed there (0 for none).
     */
    private void check(int cid, int io, long lba0, long seq0, long expect) {
        long off = (long) cid * options.ioSize();
        long slba = (sliceStart + io) * blocksPerIo;
        boolean full = verified % FULL_CHECK_EVERY == 0;
        int blocks = full ? blocksPerIo : 1;
        for (int b = 0; b < blocks; b++) {
            long at = off + (long) b * blockSize;
            MemorySegment page = readBufs.page(at);
            long in = at % DmaRegion.PAGE;
            long lba = b == 0 ? lba0 : page.get(U64, in);
            long s = b == 0 ? seq0 : page.get(U64, in + 8);
            if (lba == 0 && s == 0 && expect == 0) {
                if (full && MemorySegment.mismatch(page, in, in + blockSize, zeroBlock, 0, blockSize) >= 0) {
                    throw mismatch(slba + b, "a block never written is not all zeroes");
                }
                continue;
            }
            if (lba != slba + b) {
                throw mismatch(slba + b, "it carries LBA " + lba);
            }
            if (expect != 0 && s != expect) {
                throw mismatch(slba + b, "it carries write " + s + ", the last completed there was " + expect);
            }
            if (full) {
                long j = MemorySegment.mismatch(page, in + HEADER, in + blockSize, patternBlock, HEADER, blockSize);
                if (j >= 0) {
                    int bad = HEADER + (int) j;
                    throw mismatch(slba + b, "byte " + bad + " is " + page.get(ValueLayout.JAVA_BYTE, in + bad)
                            + ", written " + pattern[bad]);
                }
            }
        }
        verified++;
    }

    private ErrnoException mismatch(long lba, String what) {
        return new ErrnoException(Errno.EIO, "nvme perf: data check of LBA " + lba + " on core " + core + " failed: "
                + what);
    }

    /** Unmaps the worker's buffers. */
    void close() {
        try {
            readBufs.close();
        } finally {
            writeBufs.close();
        }
    }
}
