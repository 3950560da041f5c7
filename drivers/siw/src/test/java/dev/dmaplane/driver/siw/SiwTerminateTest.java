package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Remote access errors reported to the peer with a TERMINATE (RFC 5040 sections 4.8 and 7, RFC 5041 section 7;
 * {@code siw_init_terminate}, {@code siw_send_terminate}, {@code siw_proc_terminate}): a READ of a source STag the
 * responder does not know fails on the requester with REM_ACCESS_ERR, the responder raises QP_ACCESS_ERR; an RDMA
 * WRITE to an unknown STag has completed on the requester (iWARP acknowledges nothing), whose QP then goes to ERR
 * with QP_FATAL. Both QPs end in ERR with what was outstanding flushed, both connections closed.
 */
@Timeout(60)
class SiwTerminateTest {
    private final SiwHosts h = new SiwHosts(35, 36);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    private long counter(SiwDriver d, String name) {
        return d.providers.get("siw0").hwCounters(1).get(name);
    }

    @Test
    void aReadOfAnUnknownStagFailsWithRemoteAccessErrorOnBothSides() {
        QueuePair[] p = h.pair();
        p[1].postRecv(List.of(RecvWr.of(8, h.b.sge(0, 64))));
        int bad = h.b.mr.rkey() ^ 0x5a00;
        p[0].postSend(new SendWr.RdmaRead(1, List.of(h.a.sge(0, 4096)), SIGNALED, h.b.buf, bad));
        WorkCompletion c = SiwHosts.one(h.a.cq);
        assertEquals(WcStatus.REM_ACCESS_ERR, c.status(), c.toString());
        assertEquals(1, c.wrId());

        AsyncEvent e = h.b.asyncEvent();
        assertEquals(EventType.QP_ACCESS_ERR, e.type());
        WorkCompletion flushed = SiwHosts.one(h.b.cq);
        assertEquals(WcStatus.WR_FLUSH_ERR, flushed.status(), "the responder's receive flushed");
        assertEquals(QpState.ERR, p[1].query().qpState());
        assertEquals(QpState.ERR, p[0].query().qpState());
        assertEquals(1, counter(h.db, "dmaplane_terminate_sent"));
        assertEquals(1, counter(h.da, "dmaplane_terminate_received"));
        IwCmEvent d = h.a.event();
        assertEquals(IwCmEvent.Type.DISCONNECT, d.type(), "the requester's peer ended the stream");
        assertEquals(Errno.ECONNRESET, d.status());
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
        assertEquals(IwCmEvent.Type.DISCONNECT, h.b.event().type(), "the requester closed after the TERMINATE");
        SiwHosts.expect(h.b.event(), IwCmEvent.Type.CLOSE);
    }

    @Test
    void aWriteToAnUnknownStagEndsTheRequestersQpAfterItCompleted() {
        QueuePair[] p = h.pair();
        p[0].postRecv(List.of(RecvWr.of(7, h.a.sge(1 << 20, 64))));
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 4096)), SIGNALED, h.b.buf,
                h.b.mr.rkey() ^ 0x5a00));
        WorkCompletion w = SiwHosts.one(h.a.cq);
        assertEquals(WcStatus.SUCCESS, w.status(), "handed to TCP: iWARP has no acknowledgements");
        WorkCompletion flushed = SiwHosts.one(h.a.cq);
        assertEquals(WcStatus.WR_FLUSH_ERR, flushed.status(), "the TERMINATE moved the requester to ERR");
        assertEquals(7, flushed.wrId());
        assertEquals(EventType.QP_FATAL, h.a.asyncEvent().type());
        assertEquals(EventType.QP_ACCESS_ERR, h.b.asyncEvent().type());
        assertEquals(QpState.ERR, p[1].query().qpState());
        assertEquals(1, counter(h.db, "dmaplane_terminate_sent"));
    }
}
