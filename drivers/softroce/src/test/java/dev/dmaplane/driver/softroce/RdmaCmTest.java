package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.CmIdInfo;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.PortSpace;
import dev.dmaplane.rdma.cm.RejectReason;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.impl.RdmaCommands;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.driver.softroce.CmEnd.at;
import static dev.dmaplane.driver.softroce.CmFlows.text;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The rdma_cm over Soft-RoCE's in-process fabric, rxe0 (10.0.0.4) and rxe1 (10.0.0.5), as rdma_cm(7),
 * rdma_connect(3), rdma_accept(3), rdma_reject(3), rdma_disconnect(3) and rdma_get_cm_event(3) describe it and
 * {@code drivers/infiniband/core/cma.c} with {@code cm.c} (IBTA chapter 12) implement it: connect and accept with
 * the QPs moved to RTS by the CM, then RDMA WRITE and SEND; disconnect from either end with DISCONNECTED and
 * TIMEWAIT_EXIT; reject with private data (REJECTED, reason 28); a REQ to a port nobody listens on (REJECTED,
 * INVALID_SERVICE_ID); a port in use (EADDRINUSE); addresses no port has (EADDRNOTAVAIL) or routes to
 * (ADDR_ERROR, EHOSTUNREACH); a REQ to nobody (UNREACHABLE, ETIMEDOUT, after the CM's retries); private data over
 * each message's size (EINVAL); the HCA unplugged under a connected id (DEVICE_REMOVAL); the ids listed as
 * {@code rdma res show cm_id} lists them.
 */
@Timeout(60)
class RdmaCmTest extends RdmaCmTestBase {
    @Test
    void connectAcceptWriteSendAndDisconnectFromTheClient() {
        CmId l = CmFlows.listen(server, SERVER, 4);
        CmId conn = CmFlows.connect(client, server, l, CLIENT, SERVER);
        assertEquals("rxe0", client.id.verbs().deviceName(), "bound to rxe0's 10.0.0.4");
        assertEquals(at("10.0.0.4", client.id.localAddr().getPort()), client.id.localAddr());
        assertTrue(client.id.localAddr().getPort() >= 32768, "an ephemeral port");
        assertEquals("rxe1", conn.verbs().deviceName());
        List<CmIdInfo> ids = h.core.cm().ids();
        assertEquals(3, ids.size(), ids.toString());
        String shown = ids.toString();
        assertTrue(shown.contains("link rxe1/1 lqpn " + server.qp.qpNum() + " qp-type RC state CONNECT ps TCP"
                + " src-addr 10.0.0.5:7471 dst-addr 10.0.0.4:" + client.id.localAddr().getPort()), shown);
        assertTrue(shown.contains("state LISTEN ps TCP src-addr 10.0.0.5:7471"), shown);
        String gogo = new RdmaCommands(h.core).res("cm_id");
        assertTrue(gogo.contains("state LISTEN ps TCP src-addr 10.0.0.5:7471"), gogo);
        assertEquals(3, gogo.lines().count(), gogo);
        assertEquals(Errno.EINVAL, fails(() -> new RdmaCommands(h.core).res("qp")).errno());
        CmFlows.writeAndSend(client, server, 5);
        CmFlows.disconnect(client, server);
        assertEquals("DISCONNECT", client.id.state());
    }

    @Test
    void aLostRepIsSentAgainAndALostRtuIsAnsweredByTheRepeatedRep() {
        h.core.cm().setCmResponseTimeout(8); // the REP waits 1 ms for the RTU, the REQ 513 ms for the REP
        AtomicInteger reps = new AtomicInteger();
        AtomicInteger rtus = new AtomicInteger();
        h.driver.fabric.loss = p -> (CmFlows.isCm(p, 0x13) && reps.getAndIncrement() == 0)
                || (CmFlows.isCm(p, 0x14) && rtus.getAndIncrement() == 0);
        CmId l = CmFlows.listen(server, SERVER, 4);
        CmFlows.connect(client, server, l, CLIENT, SERVER);
        assertTrue(reps.get() >= 3, "the first REP lost, the REP resent after its timeout (cm_process_send_error "
                + "retries it), and once more for the lost RTU: " + reps.get());
        assertTrue(rtus.get() >= 2, "the lost RTU sent again for a repeated REP (cm_dup_rep_handler): " + rtus.get());
        h.driver.fabric.loss = null;
        CmFlows.writeAndSend(client, server, 7);
        CmFlows.disconnect(client, server);
    }

    /**
     * A lost DREQ is sent again after its timeout; a lost DREP is recovered by the DREQ repeated once more
     * ({@code drivers/infiniband/core/cm.c}). On RoCE that repeat comes 2 packet lifetimes and the response timeout
     * (513 ms here) after the last, later than the server's time wait of {@code cm_convert_to_ms} of its ack timeout
     * (512 ms) ends, so it normally finds the server's ib_cm_id IDLE, where {@code cm_dreq_handler} drops it, and the
     * DREP comes once the server destroyed its id after TIMEWAIT_EXIT, from {@code cm_issue_drep} (a repeat that
     * still meets the time wait gets the DREP from there): DISCONNECTED with status 0 at the client, not the
     * DREQ's timeout.
     */
    @Test
    void aLostDreqIsSentAgainAndALostDrepIsAnsweredAgain() {
        h.core.cm().setCmResponseTimeout(8); // a DREQ waits 513 ms for its DREP
        established();
        AtomicInteger dreqs = new AtomicInteger();
        AtomicInteger dreps = new AtomicInteger();
        h.driver.fabric.loss = p -> (CmFlows.isCm(p, 0x15) && dreqs.getAndIncrement() == 0)
                || (CmFlows.isCm(p, 0x16) && dreps.getAndIncrement() == 0);
        client.id.disconnect();
        server.expect(CmEventType.DISCONNECTED);
        server.id.disconnect(); // its DREP is lost
        server.expect(CmEventType.TIMEWAIT_EXIT);
        server.id.destroy();
        assertEquals(0, client.expect(CmEventType.DISCONNECTED).status(), "a DREP came, not the DREQ's timeout");
        client.expect(CmEventType.TIMEWAIT_EXIT);
        assertTrue(dreqs.get() >= 3, "lost, resent, and resent once more as the DREP was lost: " + dreqs.get());
        assertTrue(dreps.get() >= 2, "the repeated DREQ answered by a DREP again: " + dreps.get());
    }

    @Test
    void aLocalDestinationStaysOnTheDeviceThatHasIt() {
        CmId l = CmFlows.listen(server, SERVER, 4);
        CmFlows.connect(client, server, l, null, SERVER);
        assertEquals("rxe1", client.id.verbs().deviceName(), "rdma_resolve_ip: the destination is local to rxe1");
        assertEquals(at("10.0.0.5", client.id.localAddr().getPort()), client.id.localAddr());
        CmFlows.writeAndSend(client, server, 4);
        CmFlows.disconnect(client, server);
    }

    @Test
    void disconnectFromTheServer() {
        CmId l = CmFlows.listen(server, at("0.0.0.0", 7471), 4);
        CmFlows.connect(client, server, l, CLIENT, SERVER);
        CmFlows.writeAndSend(client, server, 6);
        CmFlows.disconnect(server, client);
    }

    @Test
    void aRejectCarriesItsPrivateDataAndReason28() {
        CmId l = CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, CLIENT, SERVER);
        client.id.connect(ConnParam.of(text("let me in"), 1, 1));
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        assertEquals(Errno.EINVAL, fails(() -> req.id().reject(new byte[149])).errno(),
                "a REJ carries 148 bytes");
        req.id().reject(text("not today"));
        CmEvent rej = client.expect(CmEventType.REJECTED);
        assertEquals(RejectReason.CONSUMER_DEFINED, rej.status());
        assertEquals("not today", new String(rej.param().privateData(), 0, 9, StandardCharsets.US_ASCII));
        assertEquals(148, rej.param().privateData().length, "librdmacm hands the whole REJ private data field");
        assertEquals(QpState.ERR, client.qp.state(), "cma_modify_qp_err on REJECTED");
        assertEquals(Errno.EINVAL, fails(() -> req.id().accept(ConnParam.of(null, 1, 1)))
                .errno(), "nothing left to accept");
        assertEquals("LISTEN", l.state());
    }

    /**
     * {@code rdma_reject} on RoCE ({@code drivers/infiniband/core/cma.c}): {@code ib_send_cm_rej} leaves the ib_cm_id
     * IDLE ({@code cm_reset_to_idle}) and moves the rdma_cm id nowhere; no {@code cma_ib_handler} event follows a
     * REJ this side sent, so the id stays in CONNECT with its ib_cm_id until {@code rdma_destroy_id}. The later calls
     * answer as {@code cma.c} does: {@code rdma_disconnect} 0 (the QP to ERR, then {@code ib_send_cm_dreq} and
     * {@code ib_send_cm_drep} refused by the IDLE ib_cm_id and their errors dropped), {@code rdma_reject} EINVAL
     * ({@code ib_send_cm_rej} on an IDLE ib_cm_id), {@code rdma_accept} EINVAL ({@code ib_send_cm_rep}),
     * {@code rdma_connect} EINVAL (not ROUTE_RESOLVED), {@code rdma_listen} EINVAL (not ADDR_BOUND).
     */
    @Test
    void aRejectedRequestsIdStaysInConnect() {
        CmId conn = request(ConnParam.of(null, 1, 1));
        conn.reject(null);
        client.expect(CmEventType.REJECTED);
        assertEquals("CONNECT", conn.state(), "rdma_reject moves no state");
        conn.disconnect();
        assertEquals(List.of(Errno.EINVAL, Errno.EINVAL, Errno.EINVAL, Errno.EINVAL),
                List.of(fails(() -> conn.reject(null)).errno(),
                        fails(() -> conn.accept(ConnParam.of(null, 1, 1))).errno(),
                        fails(() -> conn.connect(ConnParam.of(null, 1, 1))).errno(),
                        fails(() -> conn.listen(1)).errno()),
                "reject, accept, connect, listen");
        assertEquals("CONNECT", conn.state());
        conn.destroy();
    }

    /**
     * The active side of a rejected request ({@code cma_ib_handler}, {@code IB_CM_REJ_RECEIVED}): the QP to ERR and
     * REJECTED, no state moved, so the id stays in CONNECT with its IDLE ib_cm_id: {@code rdma_disconnect} 0,
     * {@code rdma_connect} EINVAL (not ROUTE_RESOLVED), {@code rdma_reject} and {@code rdma_accept} EINVAL
     * ({@code ib_send_cm_rej} on an IDLE ib_cm_id; {@code rdma_accept} first needs CONNECT, which it has, then its
     * QP's move finds no attributes in the IDLE ib_cm_id, {@code ib_cm_init_qp_attr}).
     */
    @Test
    void aRejectedClientsIdStaysInConnect() {
        request(ConnParam.of(null, 1, 1)).reject(null);
        client.expect(CmEventType.REJECTED);
        assertEquals(QpState.ERR, client.qp.state(), "cma_modify_qp_err on REJECTED");
        assertEquals("CONNECT", client.id.state(), "REJECTED moves no state");
        client.id.disconnect();
        assertEquals(List.of(Errno.EINVAL, Errno.EINVAL, Errno.EINVAL),
                List.of(fails(() -> client.id.connect(ConnParam.of(null, 1, 1))).errno(),
                        fails(() -> client.id.reject(null)).errno(),
                        fails(() -> client.id.accept(ConnParam.of(null, 1, 1))).errno()),
                "connect, reject, accept");
        assertEquals("CONNECT", client.id.state());
    }

    @Test
    void aClientDestroyingItsIdBeforeTheReplyRejectsWithTimeout() {
        CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, CLIENT, SERVER);
        client.id.connect(ConnParam.of(null, 1, 1));
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        client.id.destroy(); // cm_destroy_id in REQ_SENT: REJ TIMEOUT with the CA GUID as ARI
        CmEvent rej = server.expect(CmEventType.REJECTED);
        assertEquals(req.id(), rej.id());
        assertEquals(RejectReason.TIMEOUT, rej.status());
        assertEquals(Errno.EINVAL, fails(() -> req.id().accept(ConnParam.of(null, 1, 1)))
                .errno(), "the request is gone");
    }

    @Test
    void aRequestToAPortNobodyListensOnIsRejectedWithInvalidServiceId() {
        CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, CLIENT, at("10.0.0.5", 7472));
        client.id.connect(ConnParam.of(null, 0, 0));
        assertEquals(RejectReason.INVALID_SERVICE_ID, client.expect(CmEventType.REJECTED).status());
        assertEquals(Errno.ETIMEDOUT, fails(() -> server.ch.getEvent(Duration.ofMillis(100))).errno(),
                "no CONNECT_REQUEST");
    }

    @Test
    void portsAndAddressesInUseOrUnknown() {
        CmFlows.listen(server, SERVER, 4);
        CmId second = server.ch.createId(PortSpace.TCP);
        assertEquals(Errno.EADDRINUSE, fails(() -> second.bindAddr(SERVER)).errno());
        assertEquals(Errno.EADDRINUSE, fails(
                () -> second.bindAddr(at("0.0.0.0", 7471))).errno(), "the wildcard overlaps 10.0.0.5");
        assertEquals("IDLE", second.state(), "a refused bind changes nothing");
        second.bindAddr(at("10.0.0.4", 7471)); // another address
        CmId udp = server.ch.createId(PortSpace.UDP);
        udp.bindAddr(SERVER); // another port space
        assertEquals(Errno.EADDRNOTAVAIL, fails(
                () -> server.ch.createId(PortSpace.TCP).bindAddr(at("10.9.9.9", 1))).errno());
        assertEquals(Errno.EINVAL, fails(() -> second.bindAddr(at("10.0.0.4", 1))).errno(), "bound already");
        assertEquals(Errno.EINVAL, fails(() -> second.resolveRoute(100)).errno(),
                "no address resolved");
        CmId lost = client.ch.createId(PortSpace.TCP);
        lost.resolveAddr(null, at("192.168.7.7", 1), 1000);
        assertEquals(-Errno.EHOSTUNREACH.number(), client.expect(CmEventType.ADDR_ERROR).status());
        assertEquals(Errno.EINVAL, fails(
                () -> client.ch.createId(PortSpace.TCP).resolveAddr(null, at("0.0.0.0", 1), 1000)).errno());
    }

    /**
     * librdmacm's {@code ucma_valid_param} ({@code librdmacm/cma.c}): responder resources above the device's
     * {@code max_qp_rd_atom} or an initiator depth above its {@code max_qp_init_rd_atom} (rxe's 128) is EINVAL from
     * {@code rdma_connect} and {@code rdma_accept} before anything is sent or moved; 255 ({@code RDMA_MAX_RESP_RES},
     * {@code RDMA_MAX_INIT_DEPTH}) is the device's maximum on connect and the request's value, at most that, on
     * accept.
     */
    @Test
    void depthsAboveTheDevicesAreEinvalAnd255IsItsMaximum() {
        CmId l = CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, CLIENT, SERVER);
        assertEquals(Errno.EINVAL, fails(
                () -> client.id.connect(ConnParam.of(null, 129, 1))).errno(), "responder resources 129");
        assertEquals(Errno.EINVAL, fails(
                () -> client.id.connect(ConnParam.of(null, 1, 129))).errno(), "initiator depth 129");
        assertEquals("ROUTE_RESOLVED", client.id.state(), "nothing sent");
        client.id.connect(ConnParam.of(null, 255, 4));
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        assertEquals(List.of(4, 128), List.of(req.param().responderResources(), req.param().initiatorDepth()),
                "the REQ's initiator depth 4 and responder resources 128, seen from the server");
        server.resources(req.id());
        assertEquals(Errno.EINVAL, fails(() -> req.id().accept(ConnParam.of(null, 200, 1))).errno());
        assertEquals(QpState.INIT, server.qp.state(), "a refused accept moved nothing");
        req.id().accept(ConnParam.of(null, 255, 255));
        client.expect(CmEventType.ESTABLISHED);
        server.expect(CmEventType.ESTABLISHED);
        assertEquals(List.of(4, 128), List.of(server.qp.query().maxDestRdAtomic(), server.qp.query().maxRdAtomic()),
                "the request's depths: READs it serves 4, READs it may issue 128");
        assertEquals("LISTEN", l.state());
    }

    /**
     * A REQ takes 56 bytes of private data after the IP header and {@code rdma_connect} refuses more before anything
     * is sent. A REP takes 196: {@code cma_accept_ib} moves the QP to RTR and RTS, then {@code ib_send_cm_rep}
     * refuses 197 bytes with EINVAL ({@code drivers/infiniband/core/cm.c}), and {@code rdma_accept}'s {@code reject:}
     * path ({@code drivers/infiniband/core/cma.c}) moves the QP to ERR and sends a REJ with reason
     * {@code IB_CM_REJ_CONSUMER_DEFINED}: the client's id is REJECTED with status 28 and its QP in ERR, and the
     * request cannot be accepted again. A REP of 196 bytes to the next request connects.
     */
    @Test
    void privateDataOverTheMessageSizeIsEinval() {
        CmId l = CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, CLIENT, SERVER);
        assertEquals(Errno.EINVAL, fails(
                () -> client.id.connect(ConnParam.of(new byte[57], 1, 1))).errno(), "56 bytes after the IP header");
        assertEquals("ROUTE_RESOLVED", client.id.state(), "nothing sent");
        client.id.connect(ConnParam.of(new byte[56], 1, 1));
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        server.resources(req.id());
        assertEquals(Errno.EINVAL, fails(
                () -> req.id().accept(ConnParam.of(new byte[197], 1, 1))).errno(), "a REP carries 196 bytes");
        assertEquals(QpState.ERR, server.qp.state(), "cma_modify_qp_err");
        CmEvent rej = client.expect(CmEventType.REJECTED);
        assertEquals(RejectReason.CONSUMER_DEFINED, rej.status());
        assertEquals(QpState.ERR, client.qp.state());
        assertEquals(Errno.EINVAL, fails(
                () -> req.id().accept(ConnParam.of(null, 1, 1))).errno(), "the request was rejected");
        req.id().destroy();
        client.id.destroy();

        CmFlows.resolve(client, CLIENT, SERVER);
        client.id.connect(ConnParam.of(null, 1, 1));
        CmEvent next = server.expect(CmEventType.CONNECT_REQUEST);
        server.resources(next.id());
        next.id().accept(ConnParam.of(new byte[196], 1, 1));
        client.expect(CmEventType.ESTABLISHED);
        server.expect(CmEventType.ESTABLISHED);
        assertEquals("LISTEN", l.state());
    }

    @Test
    void aRequestToNobodyIsUnreachableAfterTheRetries() {
        h.core.cm().setCmResponseTimeout(8); // 1 ms + 2 packet lifetimes (512 ms) per try
        h.core.cm().setMaxCmRetries(2);
        CmFlows.resolve(client, null, at("10.0.0.77", 7471)); // routed on rxe0's /24, owned by nobody
        long t0 = System.nanoTime();
        client.id.connect(ConnParam.of(null, 1, 1));
        CmEvent e = client.expect(CmEventType.UNREACHABLE);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(-Errno.ETIMEDOUT.number(), e.status());
        assertTrue(ms >= 3 * 513 - 50 && ms < 8000, "three tries of 513 ms each: " + ms + " ms");
        // cma_ib_handler moves nothing on UNREACHABLE: the id stays in CONNECT, its QP where rdma_connect left it
        assertEquals("CONNECT", client.id.state());
        assertEquals(QpState.INIT, client.qp.state());
        assertEquals(Errno.EINVAL, fails(
                () -> client.id.connect(ConnParam.of(null, 1, 1))).errno(), "rdma_connect needs ROUTE_RESOLVED");
        client.id.disconnect(); // its IDLE ib_cm_id refuses a DREQ and a DREP; rdma_disconnect returns 0 all the same
        assertEquals(QpState.ERR, client.qp.state(), "rdma_disconnect's cma_modify_qp_err");
        assertEquals(Errno.EINVAL, fails(() -> h.core.cm().setMaxCmRetries(16)).errno());
    }

    @Test
    void unpluggingTheHcaUnderAConnectedIdIsDeviceRemoval() {
        CmId l = CmFlows.listen(server, SERVER, 4);
        CmFlows.connect(client, server, l, CLIENT, SERVER);
        PciFunction fn = h.machine.pci().function("05:00.0");
        h.machine.hotUnplug(fn);
        assertEquals(l, server.expect(CmEventType.DEVICE_REMOVAL).id(), "the listener bound to rxe1's 10.0.0.5");
        assertEquals(server.id, server.expect(CmEventType.DEVICE_REMOVAL).id());
        assertEquals(Errno.ENODEV, fails(() -> server.id.disconnect()).errno());
        assertNull(server.id.verbs());
        assertEquals("DEVICE_REMOVAL", l.state());
        server.id.destroy();
        l.destroy();
    }

    @Test
    void theBacklogBoundsTheRequestsWaiting() {
        CmFlows.listen(server, SERVER, 1);
        CmFlows.resolve(client, CLIENT, SERVER);
        client.id.connect(ConnParam.of(null, 1, 1));
        CmEnd other = new CmEnd(h.machine, h.core, "other");
        try {
            CmFlows.resolve(other, CLIENT, SERVER);
            other.id.connect(ConnParam.of(null, 1, 1));
            assertEquals(RejectReason.CONSUMER_DEFINED, other.expect(CmEventType.REJECTED).status(),
                    "the second request finds the backlog of 1 full");
        } finally {
            other.close();
        }
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        req.id().reject(null);
        client.expect(CmEventType.REJECTED);
    }

    @Test
    void createQpChecksTheDeviceAndType() {
        CmFlows.resolve(client, CLIENT, SERVER);
        CmId other = server.ch.createId(PortSpace.TCP);
        other.bindAddr(SERVER);
        assertEquals(Errno.EINVAL, fails(() -> other.createQp(client.pd,
                new QpInitAttr(client.cq, client.cq, null, new QpCap(4, 4, 1, 1, 0), QpType.RC, false))).errno(),
                "a PD of rxe0 for an id on rxe1");
        assertEquals(Errno.EINVAL, fails(() -> client.id.createQp(client.pd,
                new QpInitAttr(client.cq, client.cq, null, new QpCap(4, 4, 1, 1, 0), QpType.RC, false))).errno(),
                "the id has its QP");
    }
}
