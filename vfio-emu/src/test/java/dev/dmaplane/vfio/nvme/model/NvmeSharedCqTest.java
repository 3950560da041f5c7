package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import dev.dmaplane.vfio.nvme.NvmeRegs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.vfio.nvme.NvmeCommand.NVM_READ;
import static dev.dmaplane.vfio.nvme.NvmeCommand.NVM_WRITE;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Two submission queues completing into one completion queue (NVM Express Base Specification 2.0, 3.3.1: several
 * SQs may share a CQ; 4.2.4 the phase tag inverts on each pass; 3.3.1.2 a full CQ is never overwritten), served by
 * two of the controller's command engines at the same time, as QEMU's per-SQ {@code nvme_process_sq} does. The host
 * side interleaves submissions to both queues and reaping from a four-entry CQ in a seeded random order; every
 * command completes exactly once, on the CQ entry and with the phase tag the host expects, and its data is right.
 */
class NvmeSharedCqTest {
    private static final int CQID = 2;
    private static final int CQ_ENTRIES = 4;
    private static final int SQ_ENTRIES = 16;
    private static final int COMMANDS = 3000;
    private static final long TIMEOUT_NS = TimeUnit.SECONDS.toNanos(60);

    private NvmeMachine m;

    @AfterEach
    void close() {
        if (m != null) {
            Controller c = m.controller;
            m.close();
            assertFalse(c.threads().stream().anyMatch(Thread::isAlive), "the engines stopped with the machine");
        }
    }

    /** One host-side submission queue: its ring, tail and the identifiers of its commands not yet completed. */
    private static final class HostSq {
        final int qid;
        final NvmeTestDriver.Buffer ring;
        final NvmeTestDriver.Buffer data;
        final Set<Integer> outstanding = new HashSet<>();
        int tail;
        int cids;

        HostSq(int qid, NvmeTestDriver.Buffer ring, NvmeTestDriver.Buffer data) {
            this.qid = qid;
            this.ring = ring;
            this.data = data;
        }
    }

    @Test
    void twoSubmissionQueuesOnOneCompletionQueueCompleteEveryCommandOnceInPhase() {
        m = new NvmeMachine(false);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Buffer cq = d.buffer(4096);
        assertTrue(d.admin(NvmeCommand.createCq(0, CQID, CQ_ENTRIES, cq.bus(), 0, false)).ok());
        List<HostSq> sqs = new ArrayList<>();
        for (int qid = 2; qid <= 3; qid++) {
            HostSq sq = new HostSq(qid, d.buffer(4096), d.buffer(SQ_ENTRIES * 4096L));
            assertTrue(d.admin(NvmeCommand.createSq(0, qid, SQ_ENTRIES, sq.ring.bus(), CQID)).ok());
            sqs.add(sq);
        }
        assertNotEquals(2 % Controller.ENGINES, 3 % Controller.ENGINES, "the two SQs have engines of their own");

        Random rnd = new Random(20261207);
        int submitted = 0;
        int completed = 0;
        int head = 0;
        boolean phase = true;
        long deadline = System.nanoTime() + TIMEOUT_NS;
        while (completed < COMMANDS) {
            assertTrue(System.nanoTime() < deadline, completed + " of " + COMMANDS + " completed in time");
            int action = rnd.nextInt(3);
            if (action < 2 && submitted < COMMANDS) {
                HostSq sq = sqs.get(action);
                if (sq.outstanding.size() < SQ_ENTRIES - 1) {
                    submit(d, sq, rnd);
                    submitted++;
                }
                continue;
            }
            MemorySegment slot = cq.cpu().asSlice((long) head * NvmeCompletion.SIZE, NvmeCompletion.SIZE);
            VarHandle.acquireFence();
            if (NvmeCompletion.phaseOf(slot) != phase) {
                Thread.onSpinWait();
                continue;
            }
            NvmeCompletion c = NvmeCompletion.readFrom(slot);
            assertTrue(c.ok(), "completion " + completed + ": " + c);
            HostSq sq = sqs.get(c.sqId() - 2);
            assertTrue(c.sqId() == 2 || c.sqId() == 3, "completion " + completed + " names SQ " + c.sqId());
            assertTrue(sq.outstanding.remove(c.cid()), "completion " + completed + " for command " + c.cid()
                    + " of SQ " + c.sqId() + ", not outstanding (completed twice, or an entry overwritten)");
            check(sq, c.cid());
            completed++;
            head = (head + 1) % CQ_ENTRIES;
            if (head == 0) {
                phase = !phase;
            }
            d.regs.write(NvmeRegs.cqHeadDoorbell(CQID, d.dstrd), 4, head);
        }
        assertTrue(m.controller.awaitIdle(10, TimeUnit.SECONDS));
        VarHandle.acquireFence();
        assertNotEquals(phase, NvmeCompletion.phaseOf(cq.cpu().asSlice((long) head * NvmeCompletion.SIZE)),
                "no completion beyond the commands submitted");
        for (HostSq sq : sqs) {
            assertTrue(sq.outstanding.isEmpty(), "SQ " + sq.qid + " left " + sq.outstanding);
        }
    }

    /**
     * Writes a block named by the command's identifier from the queue's buffer slot, or reads it back into the slot
     * after filling the slot with a marker; both queues use disjoint LBAs.
     */
    private static void submit(NvmeTestDriver.Bound d, HostSq sq, Random rnd) {
        int cid;
        do {
            cid = ++sq.cids & 0x7fff;
        } while (cid == 0 || sq.outstanding.contains(cid));
        int slot = sq.tail;
        boolean write = rnd.nextBoolean();
        MemorySegment buf = sq.data.cpu().asSlice(slot * 4096L, 512);
        buf.fill((byte) 0);
        if (write) {
            buf.set(ValueLayout.JAVA_INT_UNALIGNED, 0, sq.qid << 24 | slot);
        }
        long lba = sq.qid * 1000L + slot;
        NvmeCommand c = NvmeCommand.readWrite(write ? NVM_WRITE : NVM_READ, cid, 1, lba, 1,
                sq.data.bus() + slot * 4096L, 0);
        c.writeTo(sq.ring.cpu().asSlice((long) slot * NvmeCommand.SIZE));
        sq.outstanding.add(cid);
        sq.tail = (sq.tail + 1) % SQ_ENTRIES;
        VarHandle.fullFence();
        d.regs.write(NvmeRegs.sqTailDoorbell(sq.qid, d.dstrd), 4, sq.tail);
    }

    /** A block of the queue reads back as zeroes (never written) or as the mark of the queue and its LBA's slot. */
    private static void check(HostSq sq, int cid) {
        for (int slot = 0; slot < SQ_ENTRIES; slot++) {
            int v = sq.data.cpu().get(ValueLayout.JAVA_INT_UNALIGNED, slot * 4096L);
            assertTrue(v == 0 || v == (sq.qid << 24 | slot), "SQ " + sq.qid + " slot " + slot + " holds " + v
                    + " after command " + cid);
        }
    }
}
