package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.vfio.nvme.NvmeCommand.NVM_READ;
import static dev.dmaplane.vfio.nvme.NvmeCommand.NVM_WRITE;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Reads on three queues, each served by its own command engine, while a fourth queue's writes rewrite one namespace
 * page again and again: each Read DMAs straight from the namespace's pages, and each sees every logical block of
 * the written page whole (NVM Express Base Specification 2.0, 2.1.4.2 AWUN: a write of one block is atomic with
 * respect to reads), the page nobody writes as it was, and a hole as zeroes (Identify Namespace DLFEAT 1).
 */
class NvmeConcurrentIoTest {
    private static final int BLOCK = 512;
    private static final int PAGE_BLOCKS = 8;
    private static final int WRITES = 300;
    private static final int MAX_READS = 1_000_000;
    private static final long WAIT_S = 60;

    private NvmeMachine m;
    private final ExecutorService pool = Executors.newFixedThreadPool(4);

    @AfterEach
    void close() throws InterruptedException {
        pool.shutdownNow();
        assertTrue(pool.awaitTermination(WAIT_S, TimeUnit.SECONDS), "every host thread stopped");
        if (m != null) {
            m.close();
        }
    }

    @Test
    void readersOnOtherEnginesSeeWholeBlocksWhileAWriterWrites() throws Exception {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Buffer setup = d.buffer(4096);
        setup.cpu().fill((byte) 0x77);
        assertTrue(d.io(NvmeCommand.readWrite(NVM_WRITE, 0, 1, PAGE_BLOCKS, PAGE_BLOCKS, setup.bus(), 0)).ok(),
                "page 1 written once; page 0 is written by the writer, page 2 stays a hole");
        List<NvmeTestDriver.Queue> readQueues = List.of(d.queuePair(2, 4, 4), d.queuePair(3, 4, 4),
                d.queuePair(4, 4, 4));
        List<NvmeTestDriver.Buffer> readBufs = List.of(d.buffer(3 * 4096), d.buffer(3 * 4096), d.buffer(3 * 4096));
        NvmeTestDriver.Buffer writeBuf = d.buffer(4096);
        CountDownLatch start = new CountDownLatch(1);
        Future<?> writer = pool.submit(() -> {
            assertTrue(start.await(WAIT_S, TimeUnit.SECONDS));
            for (int v = 1; v <= WRITES; v++) {
                writeBuf.cpu().fill((byte) v);
                NvmeCompletion c = d.io(NvmeCommand.readWrite(NVM_WRITE, 0, 1, 0, PAGE_BLOCKS, writeBuf.bus(), 0));
                if (!c.ok()) {
                    throw new AssertionError("write " + v + ": " + c);
                }
            }
            return null;
        });
        List<Future<Integer>> readers = new ArrayList<>();
        for (int r = 0; r < readQueues.size(); r++) {
            NvmeTestDriver.Queue q = readQueues.get(r);
            NvmeTestDriver.Buffer buf = readBufs.get(r);
            readers.add(pool.submit(() -> {
                assertTrue(start.await(WAIT_S, TimeUnit.SECONDS));
                long prp2 = buf.bus() + 4096;
                long[] list = {buf.bus() + 4096, buf.bus() + 2 * 4096};
                int reads = 0;
                boolean last = false;
                while (!last && reads < MAX_READS) {
                    last = writer.isDone();
                    buf.cpu().fill((byte) 0xEE);
                    // pages 0 and 1 in one command (PRP1 + PRP2), then pages 1 and 2 (PRP1 + PRP2 again)
                    read(d, q, 0, buf.bus(), prp2);
                    checkPage0(buf.cpu().asSlice(0, 4096), reads);
                    checkUniform(buf.cpu().asSlice(4096, 4096), 0x77, "page 1", reads);
                    read(d, q, PAGE_BLOCKS, list[0], list[1]);
                    checkUniform(buf.cpu().asSlice(4096, 4096), 0x77, "page 1 again", reads);
                    checkUniform(buf.cpu().asSlice(2 * 4096, 4096), 0, "the hole, page 2", reads);
                    reads++;
                }
                return reads;
            }));
        }
        start.countDown();
        writer.get(WAIT_S, TimeUnit.SECONDS);
        for (Future<Integer> r : readers) {
            assertTrue(r.get(WAIT_S, TimeUnit.SECONDS) > 0);
        }
        NvmeTestDriver.Buffer back = d.buffer(4096);
        assertTrue(d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, PAGE_BLOCKS, back.bus(), 0)).ok());
        checkUniform(back.cpu(), WRITES, "page 0 after the last write", 0);
    }

    private static void read(NvmeTestDriver.Bound d, NvmeTestDriver.Queue q, long slba, long prp1, long prp2) {
        NvmeCommand sent = d.submit(q, NvmeCommand.readWrite(NVM_READ, 0, 1, slba, 2 * PAGE_BLOCKS, prp1, prp2));
        NvmeCompletion c = d.reap(q);
        if (!c.ok() || c.cid() != sent.cid()) {
            throw new AssertionError("read of LBA " + slba + " on queue " + q.qid + ": " + c);
        }
    }

    /** Every block of page 0 is one write's value: never a block torn between two writes. */
    private static void checkPage0(MemorySegment page, int read) {
        for (int b = 0; b < PAGE_BLOCKS; b++) {
            MemorySegment block = page.asSlice((long) b * BLOCK, BLOCK);
            checkUniform(block, block.get(ValueLayout.JAVA_BYTE, 0), "block " + b + " of page 0", read);
        }
    }

    private static void checkUniform(MemorySegment s, int value, String what, int read) {
        for (long i = 0; i < s.byteSize(); i++) {
            if (s.get(ValueLayout.JAVA_BYTE, i) != (byte) value) {
                throw new AssertionError(what + " at byte " + i + " of read " + read + ": "
                        + s.get(ValueLayout.JAVA_BYTE, i) + ", expected " + (byte) value);
            }
        }
    }
}
