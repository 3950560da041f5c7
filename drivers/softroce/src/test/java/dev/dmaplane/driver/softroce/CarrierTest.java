package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.impl.RdmaCommands;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.PortState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The port follows its netdev's carrier as rxe's netdev notifier makes it ({@code rxe_port_down}: IB_PORT_DOWN,
 * IB_EVENT_PORT_ERR, the {@code link_downed} counter; {@code rxe_port_up}: IB_PORT_ACTIVE, IB_EVENT_PORT_ACTIVE),
 * and a link without carrier carries no packet: RC requests are retried (IBTA 9.7.6.1.3) until it comes back, or
 * end in RETRY_EXC_ERR.
 */
@Timeout(60)
class CarrierTest extends HcaTestBase {
    @Test
    void aWriteWaitsOutALostCarrierAndCompletesWhenItReturns() {
        QueuePair[] p = h.pair(); // retry_cnt 7, timeout 67 ms
        VerbsContext second = h.core.device("rxe1").orElseThrow().open(h.b.mm);
        byte[] data = "across a flapping link".getBytes();
        h.a.write(0, data);

        assertEquals("rxe1/1 state DOWN netdev eth5", h.driver.carrier("rxe1", "down"));
        for (VerbsContext c : List.of(h.b.ctx, second)) {
            AsyncEvent e = Hcas.event(c);
            assertEquals(EventType.PORT_ERR, e.type());
            assertEquals(1, e.portNum());
            assertEquals(PortState.DOWN, c.queryPort(1).state());
        }
        assertTrue(h.a.ctx.pollAsyncEvent().isEmpty(), "rxe0's port is up");
        assertTrue(new RdmaCommands(h.core).link().contains("link rxe1/1 state DOWN"));
        assertEquals(1, h.core.device("rxe1").orElseThrow().hwCounters(1).get("link_downed"));
        assertEquals("rxe1/1 state DOWN netdev eth5", h.driver.carrier("rxe1", "down"), "no change, no event");

        long dropped = h.driver.fabric.dropped.get();
        long retries = h.driver.providers.get("rxe0").engine.counters.retries;
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, data.length)), SIGNALED, h.b.buf + 512, h.b.mr.rkey()));
        // the first try was lost; a retry is due
        eventually(() -> h.driver.providers.get("rxe0").engine.counters.retries != retries, Duration.ofSeconds(10),
                "no retransmission");
        assertTrue(h.driver.fabric.dropped.get() > dropped, "the requests went nowhere");
        assertTrue(h.a.cq.poll(1).isEmpty(), "not completed while the carrier is away");
        assertArrayEquals(new byte[data.length], h.b.read(512, data.length));

        assertEquals("rxe1/1 state ACTIVE netdev eth5", h.driver.carrier("rxe1", "up"));
        for (VerbsContext c : List.of(h.b.ctx, second)) {
            assertEquals(EventType.PORT_ACTIVE, Hcas.event(c).type());
        }
        WorkCompletion wc = Hcas.one(h.a.cq);
        assertEquals(WcStatus.SUCCESS, wc.status(), "the retransmission after the carrier came back got through");
        assertArrayEquals(data, h.b.read(512, data.length));
        assertEquals(PortState.ACTIVE, h.b.ctx.queryPort(1).state());
        second.close();
    }

    @Test
    void aCarrierThatStaysAwayExhaustsTheTransportRetries() {
        QueuePair[] p = h.pair(Hcas.ALL, Hcas.ALL, 7, 2);
        h.driver.carrier("rxe0", "down"); // the requester's own port this time: nothing leaves it
        assertEquals(EventType.PORT_ERR, Hcas.event(h.a.ctx).type());
        p[0].postSend(List.of(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey())));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(WcStatus.RETRY_EXC_ERR, WcStatus.WR_FLUSH_ERR), wc.stream().map(WorkCompletion::status).toList());
        assertEquals(1, h.core.device("rxe0").orElseThrow().hwCounters(1).get("retry_exceeded_err"));
        h.driver.carrier("rxe0", "up");
        assertEquals(EventType.PORT_ACTIVE, Hcas.event(h.a.ctx).type());
    }

    @Test
    void badCarrierRequestsNameTheBadValue() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> h.driver.carrier("rxe7", "down"));
        assertEquals(Errno.ENODEV, e.errno());
        assertTrue(e.getMessage().contains("rxe7"), e.getMessage());
        ErrnoException s = assertThrows(ErrnoException.class, () -> h.driver.carrier("rxe0", "sideways"));
        assertEquals(Errno.EINVAL, s.errno());
        assertTrue(s.getMessage().contains("sideways"), s.getMessage());
        assertEquals(PortState.ACTIVE, h.a.ctx.queryPort(1).state(), "nothing changed");
        assertTrue(h.a.ctx.pollAsyncEvent().isEmpty());
    }
}
