package dev.dmaplane.rdma;

import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwPd;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Zero-length RDMA operations as IBA C9-88 allows them and rdma_rxe's {@code check_rkey} ({@code rxe_resp.c}) takes
 * them: "a zero-byte read or write op is not required to set an addr or rkey", so the responder skips the key and
 * executes. Every one of them, not just the first: the empty lease each gets is its own, and closing it changes no
 * other.
 */
class ZeroLengthAccessTest {
    private final Fixture f = new Fixture();
    private final VerbsContext ctx = f.open();
    private final ProtectionDomain pd = ctx.allocPd();
    private final CompletionQueue cq = ctx.createCq(64, null, 0);
    private final MemoryAccess mem = f.provider().handle().memory();

    @AfterEach
    void close() {
        f.close();
    }

    @Test
    void twoZeroLengthReadsInARowBothSucceed() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        p[0].postSend(new SendWr.RdmaRead(1, List.of(), SIGNALED, 0, 0));
        assertEquals(WcStatus.SUCCESS, cq.poll(1).getFirst().status(), "the first zero-length READ");
        p[0].postSend(new SendWr.RdmaRead(2, List.of(), SIGNALED, 0, 0));
        assertEquals(WcStatus.SUCCESS, cq.poll(1).getFirst().status(), "the second zero-length READ");
        p[0].postSend(new SendWr.RdmaWrite(3, List.of(), SIGNALED, 0, 0));
        assertEquals(WcStatus.SUCCESS, cq.poll(1).getFirst().status(), "a zero-length WRITE after them");
    }

    @Test
    void everyEmptyLeaseIsItsOwn() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        MemorySegment none = MemorySegment.ofArray(new byte[0]);
        DmaLease first = mem.remote((HwQp) p[1], 0, 0, 0, Access.REMOTE_READ);
        first.read(0, none);
        first.close();
        try (DmaLease second = mem.remote((HwQp) p[1], 0, 0, 0, Access.REMOTE_READ);
             DmaLease local = mem.local((HwPd) pd, 0, 0, 0, 0)) {
            assertNotSame(first, second);
            second.read(0, none);
            local.write(0, none);
            assertEquals(0, second.length());
        }
        DmaLease third = mem.remote((HwQp) p[1], 0, 0, 0, Access.REMOTE_WRITE);
        third.write(0, none);
        third.close();
    }
}
