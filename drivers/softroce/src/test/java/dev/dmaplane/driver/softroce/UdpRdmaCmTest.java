package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.RejectReason;
import dev.dmaplane.testing.Loopback;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

import static dev.dmaplane.driver.softroce.CmEnd.at;
import static dev.dmaplane.driver.softroce.CmFlows.text;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The rdma_cm between two machines that share nothing but the loopback's UDP (RoCEv2 on 127.X.Y.31 and
 * 127.X.Y.32 of {@link Loopback}): the CM MADs cross as UD datagrams between the GSIs (QP1, Q_Key 0x80010000), as
 * {@code drivers/infiniband/core/cm.c} sends them over rxe; connect and accept (rdma_connect(3), rdma_accept(3)),
 * RDMA WRITE and SEND with every byte checked, disconnect both ways (rdma_disconnect(3)), reject with private data
 * (rdma_reject(3)).
 */
@Timeout(60)
class UdpRdmaCmTest {
    private static final InetSocketAddress SERVER = at(Loopback.ip(32), 7471);
    private final UdpHcas u = new UdpHcas(31, 32);
    private final CmEnd client = new CmEnd(u.ma, u.ca, "client");
    private final CmEnd server = new CmEnd(u.mb, u.cb, "server");

    @AfterEach
    void close() {
        client.close();
        server.close();
        u.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    @Test
    void connectWriteSendAndDisconnectBothWays() {
        CmId l = CmFlows.listen(server, SERVER, 4);
        CmFlows.connect(client, server, l, null, SERVER);
        assertEquals(at(Loopback.ip(31), client.id.localAddr().getPort()), client.id.localAddr(),
                "routed from the port on the same /24");
        CmFlows.writeAndSend(client, server, 31);
        CmFlows.disconnect(client, server);

        CmEnd again = new CmEnd(u.ma, u.ca, "again");
        try {
            CmFlows.connect(again, server, l, null, SERVER);
            CmFlows.disconnect(server, again);
        } finally {
            again.close();
        }
    }

    @Test
    void aRejectCrossesWithItsPrivateData() {
        CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, null, SERVER);
        client.id.connect(ConnParam.of(text("over udp"), 1, 1));
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        assertEquals("over udp", new String(req.param().privateData(), 0, 8, StandardCharsets.US_ASCII));
        req.id().reject(text("no thanks"));
        CmEvent rej = client.expect(CmEventType.REJECTED);
        assertEquals(RejectReason.CONSUMER_DEFINED, rej.status());
        assertEquals("no thanks", new String(rej.param().privateData(), 0, 9, StandardCharsets.US_ASCII));
    }
}
