package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Trains of single-packet RDMA WRITE messages ({@link Packet.Payload.Messages}): each message keeps its own PSN,
 * RETH, checks and completion (IBTA 9.7: a WRITE_ONLY packet per message; 9.7.5.1.1: one ACK covers every earlier
 * PSN), only the checks that are the same for all of them are made once. A message the responder refuses is NAKed
 * exactly as it would be alone, and the QP flushes what follows it (libibverbs' ibv_poll_cq: IBV_WC_REM_ACCESS_ERR,
 * then IBV_WC_WR_FLUSH_ERR).
 */
@Timeout(60)
class WriteTrainTest extends HcaTestBase {
    private static List<WcStatus> statuses(List<WorkCompletion> wc) {
        return wc.stream().map(WorkCompletion::status).toList();
    }

    /**
     * {@code n} signaled 64-byte writes, the {@code i}-th of pattern {@code seed + i} (written at {@code 64 i} of
     * host a's buffer now) to {@code remote + 64 i} through {@code rkey}.
     */
    private List<SendWr> writes64(int n, long seed, long remote, int rkey) {
        List<SendWr> wrs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            h.a.write(64L * i, Hcas.random(64, seed + i));
            wrs.add(new SendWr.RdmaWrite(i, List.of(h.a.sge(64L * i, 64)), SIGNALED, remote + 64L * i, rkey));
        }
        return wrs;
    }

    /** The statuses of {@code n} requests of which the {@code k}-th failed with {@code status}: success before, flushed after. */
    private static List<WcStatus> failedAt(int n, int k, WcStatus status) {
        List<WcStatus> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(i < k ? WcStatus.SUCCESS : i == k ? status : WcStatus.WR_FLUSH_ERR);
        }
        return out;
    }

    @Test
    void smallWritesOfOneListTravelAsTrainsAndEachLandsWhereItsRethSays() {
        QueuePair[] p = h.pair();
        Random r = new Random(11);
        int n = 200;
        List<SendWr> wrs = new ArrayList<>();
        List<byte[]> data = new ArrayList<>();
        long[] at = new long[n];
        long remote = 100_000;
        for (int i = 0; i < n; i++) { // back to back, of 1 to 1024 bytes (one packet at MTU 1024), from scattered sources
            int len = 1 + r.nextInt(1024);
            data.add(Hcas.random(len, i));
            long src = 8192L * i + r.nextInt(4096);
            h.a.write(src, data.get(i));
            at[i] = remote;
            wrs.add(new SendWr.RdmaWrite(i, List.of(h.a.sge(src, len)), SIGNALED, h.b.buf + remote, h.b.mr.rkey()));
            remote += len;
        }
        Engine rxe0 = h.engine("rxe0");
        long trains = rxe0.counters.trainsSent;
        long sent = rxe0.counters.pktsSent.get();

        p[0].postSend(wrs);

        List<WorkCompletion> wc = Hcas.poll(h.a.cq, n);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        for (int i = 0; i < n; i++) {
            assertEquals(i, wc.get(i).wrId(), "completions in order");
            assertArrayEquals(data.get(i), h.b.read(at[i], data.get(i).length), "message " + i);
        }
        assertEquals((n + Requester.TRAIN_MAX - 1) / Requester.TRAIN_MAX, rxe0.counters.trainsSent - trains, "full trains");
        assertEquals(n, rxe0.counters.pktsSent.get() - sent, "one packet per message, as on the wire");
        assertTrue(h.machine.iommu().faults().isEmpty());
    }

    @Test
    void writesToOneAddressLandInPostingOrder() {
        QueuePair[] p = h.pair();
        int n = 150;
        List<SendWr> wrs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            h.a.write(64L * i, Hcas.random(64, 1000 + i));
            wrs.add(new SendWr.RdmaWrite(i, List.of(h.a.sge(64L * i, 64)), i == n - 1 ? SIGNALED : 0, h.b.buf + 512,
                    h.b.mr.rkey()));
        }
        long trains = h.engine("rxe0").counters.trainsSent;
        p[0].postSend(wrs);
        assertTrue(Hcas.one(h.a.cq).isSuccess());
        assertArrayEquals(Hcas.random(64, 1000 + n - 1), h.b.read(512, 64), "the last message written wins");
        assertEquals(3, h.engine("rxe0").counters.trainsSent - trains);
    }

    @Test
    void aTrainEndsAtARequestThatCannotJoinIt() {
        QueuePair[] p = h.pair();
        MemoryRegion other = h.b.pd.regMr(h.b.buf + (2 << 20), 1 << 20, Hcas.ALL);
        for (int i = 0; i < 16; i++) {
            h.a.write(2048L * i, Hcas.random(2000, 50 + i));
        }
        p[1].postRecv(RecvWr.of(90, h.b.sge(8192, 4096)));
        p[1].postRecv(RecvWr.of(91, h.b.sge(16384, 4096)));
        int rkey = h.b.mr.rkey();
        List<SendWr> wrs = List.of(
                write(0, 0, 100, h.b.buf + 40_000, rkey), // a train of three
                write(1, 1, 100, h.b.buf + 40_100, rkey),
                write(2, 2, 100, h.b.buf + 40_200, rkey),
                write(3, 3, 100, h.b.buf + (2 << 20), other.rkey()), // another rkey: a train of two
                write(4, 4, 100, h.b.buf + (2 << 20) + 100, other.rkey()),
                new SendWr.RdmaWriteWithImm(5, List.of(h.a.sge(2048 * 5, 100)), SIGNALED, h.b.buf + 40_300, rkey, 7),
                write(6, 6, 2000, h.b.buf + 41_000, rkey), // two packets at MTU 1024: alone
                new SendWr.Send(7, List.of(h.a.sge(2048 * 7, 100)), SIGNALED, null),
                write(8, 8, 100, h.b.buf + 50_000, rkey), // a train of one: the next leaves a gap
                write(9, 9, 100, h.b.buf + 50_200, rkey), // a train of two
                write(10, 10, 100, h.b.buf + 50_150, rkey)); // overlapping the one before
        long trains = h.engine("rxe0").counters.trainsSent;
        p[0].postSend(wrs);
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, wrs.size());
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        long[] remote = {40_000, 40_100, 40_200, 2 << 20, (2 << 20) + 100, 40_300, 41_000, -1, 50_000, 50_200, 50_150};
        int[] len = {100, 100, 100, 100, 100, 100, 2000, 100, 100, 100, 100};
        for (int i = 0; i < remote.length; i++) {
            if (remote[i] >= 0 && i != 9) { // the tenth was overwritten in part by the eleventh
                assertArrayEquals(Arrays.copyOf(Hcas.random(2000, 50 + i), len[i]), h.b.read(remote[i], len[i]),
                        "message " + i);
            }
        }
        assertArrayEquals(Arrays.copyOfRange(Hcas.random(2000, 50 + 9), 50, 100), h.b.read(50_200 + 50, 50),
                "the tenth's bytes that the eleventh did not cover");
        assertArrayEquals(Arrays.copyOf(Hcas.random(2000, 57), 100), h.b.read(16384, 100), "the send");
        assertEquals(List.of(90L, 91L), Hcas.poll(h.b.cq, 2).stream().map(WorkCompletion::wrId).toList());
        assertEquals(4, h.engine("rxe0").counters.trainsSent - trains);
    }

    private SendWr write(long id, int slot, int len, long remote, int rkey) {
        return new SendWr.RdmaWrite(id, List.of(h.a.sge(2048L * slot, len)), SIGNALED, remote, rkey);
    }

    @Test
    void aMessageOfATrainBeyondTheRegionIsNakedAloneAndTheRestFlushed() {
        QueuePair[] p = h.pair();
        MemoryRegion small = h.b.pd.regMr(h.b.buf, 65536, Hcas.ALL);
        int n = 10;
        // back to back, the seventh starts right past the region
        List<SendWr> wrs = writes64(n, 200, h.b.buf + 65536 - 6 * 64, small.rkey());
        long trains = h.engine("rxe0").counters.trainsSent;
        p[0].postSend(wrs);
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, n);
        assertEquals(failedAt(n, 6, WcStatus.REM_ACCESS_ERR), statuses(wc));
        assertEquals(1, h.engine("rxe0").counters.trainsSent - trains, "they went as one train");
        for (int i = 0; i < 6; i++) {
            assertArrayEquals(Hcas.random(64, 200 + i), h.b.read(65536 - 6 * 64 + 64L * i, 64), "message " + i);
        }
        assertArrayEquals(new byte[4 * 64], h.b.read(65536, 4 * 64), "no byte past the region");
    }

    /**
     * A write whose local SGE the region does not cover ends the train before it: the ones before it complete, it
     * fails with LOC_PROT_ERR as it would alone, and the QP flushes the rest without sending them.
     */
    @Test
    void aMessageWhoseLocalSgeIsRefusedEndsTheTrainAndFailsAlone() {
        QueuePair[] p = h.pair();
        MemoryRegion small = h.a.pd.regMr(h.a.buf, 65536, Hcas.ALL);
        int n = 8;
        List<SendWr> wrs = new ArrayList<>();
        for (int i = 0; i < n; i++) { // the fifth reads from past the small region's end
            long src = i == 4 ? 65536 - 16 : 64L * i;
            h.a.write(64L * i, Hcas.random(64, 500 + i));
            wrs.add(new SendWr.RdmaWrite(i, List.of(new Sge(h.a.buf + src, 64, small.lkey())),
                    SIGNALED, h.b.buf + 64L * i, h.b.mr.rkey()));
        }
        h.b.write(0, new byte[n * 64]);
        long trains = h.engine("rxe0").counters.trainsSent;
        p[0].postSend(wrs);
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, n);
        assertEquals(failedAt(n, 4, WcStatus.LOC_PROT_ERR), statuses(wc));
        for (int i = 0; i < 4; i++) {
            assertArrayEquals(Hcas.random(64, 500 + i), h.b.read(64L * i, 64), "message " + i);
        }
        assertArrayEquals(new byte[4 * 64], h.b.read(4 * 64, 4 * 64), "nothing from the refused one on");
        assertEquals(1, h.engine("rxe0").counters.trainsSent - trains);
    }

    @Test
    void aTrainTheResponderCannotDmaIsNakedAtItsFirstMessage() {
        QueuePair[] p = h.pair();
        int n = 20;
        List<SendWr> wrs = writes64(n, 300, h.b.buf, h.b.mr.rkey());
        var rxe1 = h.machine.pci().function("05:00.0"); // the second HCA function, bound as rxe1
        rxe1.setMaster(false); // the responder's HCA may not write memory: the IOMMU path refuses the first copy
        try {
            p[0].postSend(wrs);
            List<WorkCompletion> wc = Hcas.poll(h.a.cq, n);
            assertEquals(failedAt(n, 0, WcStatus.REM_OP_ERR), statuses(wc));
            assertArrayEquals(new byte[n * 64], h.b.read(0, n * 64), "nothing written");
        } finally {
            rxe1.setMaster(true);
        }
    }

    @Test
    void aTrainStoredByABusyReceiverIsWrittenWithTheBytesOfSendTime() throws Exception {
        QueuePair[] p = h.pair();
        int n = 100;
        List<SendWr> wrs = writes64(n, 400, h.b.buf, h.b.mr.rkey());
        Engine rxe1 = h.engine("rxe1");
        long stored = rxe1.counters.burstsStored.get();
        long trains = h.engine("rxe0").counters.trainsSent;
        rxe1.lock.lock(); // rxe1 is busy: what reaches it now is stored
        try {
            CompletableFuture.runAsync(() -> p[0].postSend(wrs)).get(10, TimeUnit.SECONDS);
            assertTrue(rxe1.counters.burstsStored.get() > stored);
            h.a.write(0, new byte[n * 64]); // the stored train carries its own copy
            assertArrayEquals(new byte[n * 64], h.b.read(0, n * 64), "nothing written yet");
        } finally {
            rxe1.release();
        }
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, n);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        for (int i = 0; i < n; i++) {
            assertArrayEquals(Hcas.random(64, 400 + i), h.b.read(64L * i, 64), "message " + i);
        }
        assertEquals(2, h.engine("rxe0").counters.trainsSent - trains);
    }

    /** A train that arrives in part again (a duplicate prefix) is trimmed to the messages the responder lacks. */
    @Test
    void aTrainWithoutItsFirstMessagesKeepsEachRestOnesRethAndBytes() {
        Packet.Payload.Messages m = Packet.Payload.Messages.of(3, new long[]{1000, 1100, 1050}, new int[]{100, 50, 60},
                new long[]{0, 100, 150}, null);
        assertEquals(1000, m.lo());
        assertEquals(1150, m.hi());
        assertEquals(210, m.length());
        Packet train = new Packet(null, null, 1, 2, Packet.Op.WRITE, true, true, 0xFFFFFF, 3, true, 1000, 9, 100, 0, 0,
                0, 0, 0, 0, 0, new Packet.Payload.Messages(3, m.vas(), m.lengths(), m.offsets(), null,
                MemorySegment.ofArray(Hcas.random(210, 5)), m.lo(), m.hi(), m.length()), false);
        Packet rest = train.dropFront(1, 1024);
        assertEquals(0, rest.psn(), "the PSN wraps at 2^24");
        assertEquals(2, rest.count());
        assertEquals(1100, rest.va());
        assertEquals(50, rest.dmaLen());
        Packet.Payload.Messages r = (Packet.Payload.Messages) rest.payload();
        assertEquals(1050, r.lo());
        assertEquals(1150, r.hi());
        byte[] bytes = new byte[110];
        r.copyTo(0, MemorySegment.ofArray(bytes));
        assertArrayEquals(Arrays.copyOfRange(Hcas.random(210, 5), 100, 210), bytes);
        assertThrows(IllegalArgumentException.class, () -> r.dropFirst(2));
    }
}
