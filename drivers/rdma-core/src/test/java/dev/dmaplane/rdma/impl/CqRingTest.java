package dev.dmaplane.rdma.impl;

import dev.dmaplane.rdma.verbs.WcFlags;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * CQ memory: CQEs in {@code struct ib_uverbs_wc}'s layout (include/uapi/rdma/ib_user_verbs.h), a power-of-two ring
 * between a producer and a consumer index as rxe's {@code struct rxe_queue_buf}.
 */
class CqRingTest {
    private static WorkCompletion wc(long id, int flags) {
        return new WorkCompletion(id, WcStatus.SUCCESS, WcOpcode.RECV, 0, 4096, (flags & WcFlags.WITH_IMM) != 0 ? 0x12345678 : 0,
                (flags & WcFlags.WITH_INV) != 0 ? 0xabcdef01 : 0, 0x11, 0xffffff, flags, 0xffff, 0, 15, 0x7f);
    }

    @Test
    void everyFieldComesBackAsWrittenAndTheImmediateSharesItsWordWithTheInvalidatedKey() {
        CqRing r = new CqRing(8);
        List<WorkCompletion> in = List.of(wc(-1L, WcFlags.WITH_IMM | WcFlags.GRH), wc(2, WcFlags.WITH_INV), wc(3, 0),
                new WorkCompletion(4, WcStatus.GENERAL_ERR, WcOpcode.LOCAL_INV, 99, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0),
                new WorkCompletion(5, WcStatus.SUCCESS, WcOpcode.RDMA_READ, 0, 1L << 31, 0, 0, 7, 0, 0, 0, 0, 0, 0));
        for (WorkCompletion w : in) {
            assertTrue(r.push(w));
        }
        assertEquals(5, r.size());
        List<WorkCompletion> out = new ArrayList<>();
        assertEquals(5, r.poll(16, out));
        assertEquals(in, out);
        assertEquals(0, r.size());
        assertEquals(48, CqRing.CQE_SIZE, "sizeof(struct ib_uverbs_wc)");
    }

    @Test
    void theRingWrapsAndRefusesACqeWhenEverySlotIsTaken() {
        CqRing r = new CqRing(5);
        assertEquals(8, r.slots(), "rounded up to a power of two");
        List<WorkCompletion> out = new ArrayList<>();
        long next = 0;
        for (int round = 0; round < 5; round++) { // the indices run past the ring many times
            for (int i = 0; i < 8; i++) {
                assertTrue(r.push(wc(next + i, 0)));
            }
            assertFalse(r.push(wc(-1, 0)), "full");
            out.clear();
            assertEquals(3, r.poll(3, out));
            assertEquals(List.of(next, next + 1, next + 2), out.stream().map(WorkCompletion::wrId).toList());
            out.clear();
            assertEquals(5, r.poll(100, out));
            assertEquals(next + 7, out.getLast().wrId());
            next += 8;
        }
        CqRing small = new CqRing(2);
        assertTrue(small.push(wc(1, 0)));
        CqRing bigger = new CqRing(16);
        small.moveTo(bigger);
        assertEquals(0, small.size());
        out.clear();
        bigger.poll(4, out);
        assertEquals(1, out.getFirst().wrId());
    }
}
