package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.pci.Msix;
import dev.dmaplane.vfio.nvme.NvmeAdmin;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import dev.dmaplane.vfio.nvme.NvmeStatus;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.vfio.nvme.NvmeCommand.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The NVM command set through the test driver (NVM Command Set Specification 1.0, 3.2 Read, Write, Flush, Write
 * Zeroes, Dataset Management; the data pointer of NVM Express Base Specification 2.0, 4.1.1 as
 * {@code drivers/nvme/host/pci.c}'s {@code nvme_pci_setup_prps} builds it; completion by MSI-X or by polling the
 * phase tag, 4.2.4): random data written to random LBAs reads back bit-exact through another buffer.
 */
class NvmeIoTest {
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long BLOCKS = (1L << 30) / 512;

    private NvmeMachine m;

    @AfterEach
    void close() {
        if (m != null) {
            Controller c = m.controller;
            m.close();
            assertFalse(c != null && c.threads().stream().anyMatch(Thread::isAlive), "the engines stopped with the machine");
        }
    }

    private static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    /** Writes {@code blocks} 512-byte blocks at {@code slba} from {@code buf} (offset {@code off}) and reads them back. */
    private NvmeCompletion rw(NvmeTestDriver.Bound d, int opcode, NvmeTestDriver.Buffer buf, long off, long slba, int blocks) {
        long[] prp = d.prps(buf.bus() + off, blocks * 512L, 0);
        return d.io(NvmeCommand.readWrite(opcode, 0, 1, slba, blocks, prp[0], prp[1]));
    }

    private void writeThenReadBack(boolean msix) {
        m = new NvmeMachine(msix);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Buffer out = d.buffer(128 << 10);
        NvmeTestDriver.Buffer in = d.buffer(128 << 10);
        Random r = new Random(13);
        for (int i = 0; i < 40; i++) {
            int blocks = 1 + r.nextInt(240); // up to MDTS (128 KiB) less the offset
            long off = 4L * r.nextInt(128); // PRP1 offsets are dword aligned
            long slba = (long) (r.nextDouble() * (BLOCKS - blocks));
            byte[] data = random(blocks * 512, i);
            MemorySegment.copy(data, 0, out.cpu(), ValueLayout.JAVA_BYTE, off, data.length);
            NvmeCompletion w = rw(d, NVM_WRITE, out, off, slba, blocks);
            assertTrue(w.ok(), "write " + i + ": " + w);
            in.cpu().fill((byte) 0);
            long inOff = 4L * r.nextInt(128);
            NvmeCompletion rd = rw(d, NVM_READ, in, inOff, slba, blocks);
            assertTrue(rd.ok(), "read " + i + ": " + rd);
            assertArrayEquals(data, in.cpu().asSlice(inOff, data.length).toArray(ValueLayout.JAVA_BYTE),
                    "blocks " + slba + "+" + blocks + " read back bit-exact");
        }
    }

    @Test
    void randomDataReadsBackBitExactPolled() {
        writeThenReadBack(false);
        assertEquals(0, m.fn.msix().map(Msix::delivered).orElseThrow(), "IEN 0: no completion message at all");
    }

    @Test
    void randomDataReadsBackBitExactWithMsix() {
        writeThenReadBack(true);
        assertEquals(80, m.bound().io.irq.count(), "one MSI-X message on the I/O CQ's vector per completion");
        assertEquals(80, m.bound().vectors.interrupts(NvmeTestDriver.IO_VECTOR));
    }

    /** A PRP list whose page runs out after one entry chains to the next list page through its last entry. */
    @Test
    void prpListsChainAcrossListPages() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Buffer out = d.buffer(64 << 10);
        NvmeTestDriver.Buffer in = d.buffer(64 << 10);
        byte[] data = random(10 * 4096, 5);
        MemorySegment.copy(data, 0, out.cpu(), ValueLayout.JAVA_BYTE, 0, data.length);
        int near = 4096 - 16; // two slots left in the first list page: one entry, then the chain pointer
        long[] wp = d.prps(out.bus(), data.length, near);
        assertEquals(d.lists.dmaAddress() + 4096, d.lists.cpu().get(U64, near + 8), "the driver chained the list");
        assertTrue(d.io(NvmeCommand.readWrite(NVM_WRITE, 0, 1, 1000, 80, wp[0], wp[1])).ok());
        long[] rp = d.prps(in.bus(), data.length, 4096 - 8 * 3);
        assertTrue(d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 1000, 80, rp[0], rp[1])).ok());
        assertArrayEquals(data, in.cpu().asSlice(0, data.length).toArray(ValueLayout.JAVA_BYTE));
    }

    /** A write whose second page the IOMMU refuses is a Data Transfer Error, and not one byte reaches the namespace. */
    @Test
    void aDmaFaultIsADataTransferErrorAndNothingIsWritten() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Buffer buf = d.buffer(8192);
        byte[] before = random(8192, 1);
        MemorySegment.copy(before, 0, buf.cpu(), ValueLayout.JAVA_BYTE, 0, before.length);
        assertTrue(rw(d, NVM_WRITE, buf, 0, 64, 16).ok());
        buf.cpu().fill((byte) 0x5a);
        long faults = m.controller.ctx.dma().faults();
        NvmeCompletion bad = d.io(NvmeCommand.readWrite(NVM_WRITE, 0, 1, 64, 16, buf.bus(), 0x7_0000_0000L));
        assertEquals(NvmeStatus.DATA_TRANSFER_ERROR, bad.code(), bad.toString());
        assertEquals(faults + 1, m.controller.ctx.dma().faults(), "the IOMMU refused the second page");
        buf.cpu().fill((byte) 0);
        assertTrue(rw(d, NVM_READ, buf, 0, 64, 16).ok());
        assertArrayEquals(before, buf.cpu().toArray(ValueLayout.JAVA_BYTE), "no byte of the namespace changed");
    }

    @Test
    void writeZeroesAndDeallocateReadBackAsZeroesAndFlushSucceeds() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Buffer buf = d.buffer(16 << 10);
        byte[] data = random(16 << 10, 9);
        MemorySegment.copy(data, 0, buf.cpu(), ValueLayout.JAVA_BYTE, 0, data.length);
        assertTrue(rw(d, NVM_WRITE, buf, 0, 100, 32).ok());
        assertTrue(d.io(NvmeCommand.of(NVM_WRITE_ZEROES, 0, 1, 0, 0, 104, 0, 3)).ok(), "blocks 104..107");
        NvmeTestDriver.Buffer rangeBuf = d.buffer(4096);
        rangeBuf.cpu().set(U32, 4, 8);
        rangeBuf.cpu().set(U64, 8, 120);
        assertTrue(d.io(NvmeCommand.of(NVM_DSM, 0, 1, rangeBuf.bus(), 0, 0, DSM_AD, 0)).ok(), "deallocate 120..127");
        assertTrue(d.io(NvmeCommand.of(NVM_FLUSH, 0, 1, 0, 0, 0, 0, 0)).ok());
        assertTrue(d.io(NvmeCommand.of(NVM_FLUSH, 0, 0xffff_ffff, 0, 0, 0, 0, 0)).ok(), "flush of every namespace");
        buf.cpu().fill((byte) 0x11);
        assertTrue(rw(d, NVM_READ, buf, 0, 100, 32).ok());
        byte[] expect = data.clone();
        Arrays.fill(expect, 4 * 512, 8 * 512, (byte) 0);
        Arrays.fill(expect, 20 * 512, 28 * 512, (byte) 0);
        assertArrayEquals(expect, buf.cpu().toArray(ValueLayout.JAVA_BYTE));
    }

    /** A namespace on a host file keeps its blocks across machines ({@code namespaceFile}). */
    @Test
    void aNamespaceFileOutlivesTheMachine(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("ns.img");
        String props = "                namespaces: 2\n                namespaceSize: 4MiB\n                namespaceFile: \""
                + file + "\"\n";
        byte[] data = random(4096, 77);
        m = new NvmeMachine(props, false, true);
        NvmeTestDriver.Buffer buf = m.bound().buffer(4096);
        MemorySegment.copy(data, 0, buf.cpu(), ValueLayout.JAVA_BYTE, 0, data.length);
        assertTrue(m.bound().io(NvmeCommand.readWrite(NVM_WRITE, 0, 2, 8, 8, buf.bus(), 0)).ok());
        m.close();
        assertEquals(8L << 20, Files.size(file), "two namespaces of 4 MiB back to back");
        m = new NvmeMachine(props, false, true);
        NvmeTestDriver.Buffer back = m.bound().buffer(4096);
        assertTrue(m.bound().io(NvmeCommand.readWrite(NVM_READ, 0, 2, 8, 8, back.bus(), 0)).ok());
        assertArrayEquals(data, back.cpu().toArray(ValueLayout.JAVA_BYTE));
        assertTrue(m.controller.awaitIdle(5, TimeUnit.SECONDS));
    }

    /**
     * A completion queue with no free entry holds back the submission queues completing into it (Base 2.0, 3.3.1.2:
     * the controller does not overwrite entries the host has not consumed): a CQ of two entries takes one completion
     * at a time, and each head doorbell lets the next command run.
     */
    @Test
    void aFullCompletionQueueHoldsItsSubmissionQueue() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Queue q = d.queuePair(2, 8, 2);
        NvmeTestDriver.Buffer b = d.buffer(4096);
        for (int i = 0; i < 3; i++) {
            d.submit(q, NvmeCommand.readWrite(NVM_READ, 0x10 + i, 1, i, 1, b.bus(), 0));
        }
        for (int i = 0; i < 3; i++) {
            assertTrue(m.controller.awaitIdle(10, TimeUnit.SECONDS), "the controller has nothing it may run");
            NvmeCompletion c = d.reap(q);
            assertEquals(0x10 + i, c.cid());
            assertEquals(i + 1, c.sqHead(), "the SQ head moved by one command only");
            assertTrue(m.controller.awaitIdle(10, TimeUnit.SECONDS));
            if (i < 2) {
                assertTrue(d.posted(q), "the head doorbell let the next command complete");
            }
        }
        assertFalse(d.posted(q));
    }

    /**
     * The controller fetches up to the Arbitration Burst of commands from a submission queue at a time (Base 2.0,
     * 3.4.4; the burst is 2^AB of the Arbitration feature, 5.27.1.1): eight commands behind one doorbell are taken
     * in one burst of the default 2^3, so every completion's SQ Head Pointer already reads past all eight; with
     * AB set to 0 they are taken one at a time and the head moves by one per completion.
     */
    @Test
    void commandsAreFetchedInArbitrationBursts() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Queue q = d.queuePair(2, 32, 32);
        NvmeTestDriver.Buffer b = d.buffer(4096);
        for (int i = 0; i < 8; i++) {
            d.place(q, NvmeCommand.readWrite(NVM_READ, 0x20 + i, 1, i, 1, b.bus(), 0));
        }
        d.ring(q);
        for (int i = 0; i < 8; i++) {
            NvmeCompletion c = d.reap(q);
            assertEquals(0x20 + i, c.cid(), "completions in submission order");
            assertTrue(c.ok(), c.toString());
            assertEquals(8, c.sqHead(), "all eight fetched in one burst before the first completion");
        }
        assertTrue(d.admin(NvmeCommand.of(ADMIN_SET_FEATURES, 0, 0, 0, 0, NvmeAdmin.FEAT_ARBITRATION, 0, 0)).ok());
        for (int i = 0; i < 8; i++) {
            d.place(q, NvmeCommand.readWrite(NVM_READ, 0x30 + i, 1, i, 1, b.bus(), 0));
        }
        d.ring(q);
        for (int i = 0; i < 8; i++) {
            NvmeCompletion c = d.reap(q);
            assertEquals(0x30 + i, c.cid());
            assertEquals(9 + i, c.sqHead(), "a burst of one: the head moved by one command");
        }
        assertTrue(m.controller.awaitIdle(10, TimeUnit.SECONDS));
    }

    /**
     * Four submitters, each on its own queue pair and LBA range, as blk-mq's per-CPU hardware queues: the device
     * thread serves the submission queues round robin (Base 2.0, 3.4.4) and every block reads back bit-exact.
     */
    @Test
    void queuePairsOnSeveralThreadsKeepTheirData() throws Exception {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        int threads = NvmeTestDriver.GRANTED;
        List<NvmeTestDriver.Queue> queues = new ArrayList<>();
        List<NvmeTestDriver.Buffer> outs = new ArrayList<>();
        List<NvmeTestDriver.Buffer> ins = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            queues.add(t == 0 ? d.io : d.queuePair(t + 1, 16, 16));
            outs.add(d.buffer(8192));
            ins.add(d.buffer(8192));
        }
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            List<Future<Integer>> done = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int id = t;
                done.add(pool.submit(() -> {
                    NvmeTestDriver.Queue q = queues.get(id);
                    NvmeTestDriver.Buffer out = outs.get(id);
                    NvmeTestDriver.Buffer in = ins.get(id);
                    for (int i = 0; i < 50; i++) {
                        byte[] data = random(8192, id * 1000L + i);
                        MemorySegment.copy(data, 0, out.cpu(), ValueLayout.JAVA_BYTE, 0, data.length);
                        long slba = id * 100_000L + i * 16L;
                        d.submit(q, NvmeCommand.readWrite(NVM_WRITE, 0, 1, slba, 16, out.bus(), out.bus() + 4096));
                        assertTrue(d.reap(q).ok());
                        d.submit(q, NvmeCommand.readWrite(NVM_READ, 0, 1, slba, 16, in.bus(), in.bus() + 4096));
                        assertTrue(d.reap(q).ok());
                        assertArrayEquals(data, in.cpu().toArray(ValueLayout.JAVA_BYTE), "thread " + id + " block " + slba);
                    }
                    return id;
                }));
            }
            for (Future<Integer> f : done) {
                f.get(60, TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS), "every submitter stopped");
        }
    }
}
