package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.spi.RecvResult;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.util.List;

/**
 * The receive path of one connection ({@code siw_qp_rx.c}: {@code siw_tcp_rx_data}, {@code siw_proc_send},
 * {@code siw_proc_write}, {@code siw_proc_rreq}, {@code siw_proc_rresp}, {@code siw_proc_terminate}): FPDUs read
 * off the stream and their CRC checked, tagged segments placed through the STag they name (RDMA WRITE, READ
 * responses) with the access the core checks, untagged ones into the posted receive at their message offset, READ
 * requests checked and queued for the TX thread. A message's buffers are leased once for the bytes of it that were
 * read off the stream ({@link SgeLeases}, as {@code siw_proc_send} and {@code siw_proc_write} resolve the memory on
 * the first segment and keep it for the message) and let go when it ends, when the stream fails or is terminated,
 * and before the thread waits for more bytes. An error the peer caused is answered with a TERMINATE that names
 * it (RFC 5040 section 7), and the QP goes to ERR; the stream is then only drained.
 */
final class Rx {
    private static final Logger LOG = LoggerFactory.getLogger(Rx.class);

    private final Cep cep;
    private final SiwProvider dev;
    private final MemoryAccess mem;
    /**
     * What was read off the stream: FPDUs from {@link #start} to {@link #end}, read as much as is there; direct, so
     * that the stream's read puts the bytes here (into a heap buffer NIO reads into a temporary direct one and
     * copies, IOUtil.read).
     */
    private final ByteBuffer in = ByteBuffer.allocateDirect(1 << 20);
    private final MemorySegment inSeg = MemorySegment.ofBuffer(in);
    private int start;
    private int end;
    private boolean draining;
    /**
     * The FPDU being processed failed its CRC. siw checks the CRC in the trailer ({@code siw_get_trailer}), after the
     * segment's payload was placed, and {@code siw_rdmap_complete} then ends the message it belongs to in error: a
     * receive or a READ completes with GENERAL_ERR, a READ request is not answered.
     */
    private boolean crcBad;
    /** The leases of the tagged message being placed and the STag it names, or null between messages. */
    private SgeLeases tagged;
    private int taggedStag;
    /** The last tagged segment did not end its message: the next one is not a first segment. */
    private boolean taggedMore;
    /** The leases of the receive the SEND being placed fills, or null between messages. */
    private SgeLeases untagged;
    /** Where the thread waits for the stream to have bytes: the stream is non-blocking, for the sender's sake. */
    private final Selector readable;

    /**
     * Takes over the established stream: {@code TCP_NODELAY}, and non-blocking mode, so that the transmit engine
     * writes with {@code MSG_DONTWAIT} semantics ({@link Tx}), which sends nothing before; this thread then waits
     * for bytes in a selector.
     */
    Rx(Cep cep) throws IOException {
        this.cep = cep;
        this.dev = cep.dev;
        this.mem = dev.memory();
        // siw_tcp_nagle is false: siw_cm.c sets TCP_NODELAY on every connection, so that the tail of a message
        // (the segment after the last full MSS) leaves at once instead of waiting for the peer's ACK
        cep.ch.setOption(StandardSocketOptions.TCP_NODELAY, true);
        cep.ch.configureBlocking(false);
        readable = Selector.open();
        try {
            cep.ch.register(readable, SelectionKey.OP_READ);
        } catch (IOException | RuntimeException e) {
            readable.close();
            throw e;
        }
        ByteBuffer early = cep.early; // what the peer sent before the reply comes first
        if (early != null) {
            early.flip();
            in.put(early);
            end = in.position();
            cep.early = null;
        }
        cep.rxSelector = readable; // a close of the stream wakes the thread from here on
        SiwQp q = cep.qp;
        if (q != null) {
            dev.tx.kick(q); // what was posted while the stream still blocked waits for this (Tx.drive)
        }
    }

    /** Reads FPDUs until the peer closes the stream (returns) or it fails (throws); then lets go of the stream. */
    void loop() throws IOException {
        try {
            fpdus();
        } finally {
            letGo();
            readable.close();
        }
    }

    private void fpdus() throws IOException {
        while (true) {
            if (!fill(2)) {
                return;
            }
            int ulpdu = in.getShort(start) & 0xffff;
            int total = Mpa.fpduLength(ulpdu);
            if (!fill(total)) {
                throw new EOFException("siw: the peer closed the stream inside an FPDU");
            }
            int at = start;
            start += total;
            cep.received += total;
            if (draining || cep.isDisassociated()) {
                continue; // rx_suspend: the QP drops the connection, nothing more is read from it
            }
            SiwQp q = cep.qp;
            Iwarp.Segment s = Iwarp.parse(in, at + 2, ulpdu);
            if (s == null || s.ddpVersion() != 1) {
                // siw_get_hdr: a TERMINATE, no async event
                fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                        Terminate.DDP_UT_INVALID_VERSION), null, "bad DDP header");
                continue;
            }
            crcBad = !Mpa.crcOk(in, at, total);
            dispatch(q, s);
            if (crcBad && !draining) {
                // siw_get_trailer, once the segment was processed: a TERMINATE, no async event
                fail(q, new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA, Terminate.LLP_CRC), null,
                        "MPA CRC mismatch");
            }
            crcBad = false;
            if (!draining && cep.awaitingRtr()) {
                cep.rtrArrived();
            }
        }
    }

    /**
     * Makes {@code n} bytes from {@link #start} available, reading as much as the stream has; what is left is moved
     * to the front only when the FPDU would not fit behind it, so that most bytes are never copied inside the
     * buffer (the kernel's copy into it and the placement are the only ones).
     *
     * @return false when the stream ended before any of them came
     */
    private boolean fill(int n) throws IOException {
        if (end - start >= n) {
            return true;
        }
        if (start == end) {
            start = 0; // nothing left: the next read starts at the front, at no cost
            end = 0;
        } else if (start + n > in.capacity()) {
            MemorySegment.copy(inSeg, start, inSeg, 0, end - start);
            end -= start;
            start = 0;
        }
        while (end - start < n) {
            in.limit(in.capacity()).position(end);
            int r = cep.ch.read(in);
            if (r < 0) {
                return false;
            }
            if (r == 0) {
                letGo(); // no lease waits for the peer: a deregistration never waits for a stalled message
                readable.select(); // woken by bytes, the peer's FIN, or a local close (Cep.lost)
                readable.selectedKeys().clear();
            }
            end += r;
        }
        return true;
    }

    private void dispatch(SiwQp q, Iwarp.Segment s) {
        MemorySegment payload = inSeg.asSlice(s.payloadAt(), s.payloadLength());
        if (s.tagged()) {
            switch (s.opcode()) {
                case Iwarp.OP_WRITE -> placeTagged(q, s, payload, false);
                case Iwarp.OP_READ_RESPONSE -> placeTagged(q, s, payload, true);
                default -> fail(q, new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_OPERATION,
                        Terminate.RDMAP_UNEXPECTED_OPCODE), EventType.QP_FATAL, "tagged opcode " + s.opcode());
            }
            return;
        }
        switch (s.qn()) {
            case Iwarp.QN_SEND -> send(q, s, payload);
            case Iwarp.QN_READ_REQUEST -> readRequest(q, s);
            case Iwarp.QN_TERMINATE -> terminated(q, s);
            default -> fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                    Terminate.DDP_UT_INVALID_QN), EventType.QP_FATAL, "queue number " + s.qn());
        }
    }

    /**
     * {@code siw_proc_write}, {@code siw_proc_rresp}: a tagged segment into the STag it names. A refused WRITE raises
     * QP_ACCESS_ERR only where {@code siw_check_mem} refuses a region siw found: an STag that names no region on the
     * message's first segment ({@code siw_mem_id2obj} finds nothing, or the key differs) is answered with the
     * TERMINATE alone. A refused Read Response fails its READ with LOC_PROT_ERR and raises QP_ACCESS_ERR
     * ({@code siw_check_sge} in {@code siw_proc_rresp}).
     */
    private void placeTagged(SiwQp q, Iwarp.Segment s, MemorySegment payload, boolean readResponse) {
        long n = payload.byteSize();
        boolean first = !taggedMore;
        if (n > 0) {
            if (tagged == null || taggedStag != s.stag()) {
                closeTagged();
                tagged = new SgeLeases(1);
                taggedStag = s.stag();
            }
            try {
                tagged.write(0, s.to(), () -> n + Iwarp.following(in, start, end, s), payload,
                        len -> mem.remote(q.hw, s.stag(), s.to(), len, Access.REMOTE_WRITE));
            } catch (AccessFault e) {
                LOG.debug("siw: qp {} tagged placement refused", q.hw.qpNum(), e);
                if (readResponse) {
                    q.readDone(WcStatus.LOC_PROT_ERR);
                }
                boolean unknown = !readResponse && first && !dev.hasRegion(s.stag());
                fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER,
                        dev.taggedError(q, s.stag(), s.to(), n)), unknown ? null : EventType.QP_ACCESS_ERR,
                        e.getMessage());
                return;
            }
        }
        taggedMore = !s.last();
        if (crcBad) {
            // siw_rdmap_complete(qp, -EINVAL) after the trailer: the bytes are placed, a READ fails with GENERAL_ERR
            closeTagged();
            if (readResponse) {
                q.readDone(WcStatus.GENERAL_ERR);
            }
            return;
        }
        if (s.last()) {
            closeTagged();
        }
        if (readResponse && s.last()) {
            q.readDone(WcStatus.SUCCESS);
            dev.tx.kick(q); // a fenced request or one waiting for ORD room may go now
        }
    }

    /** {@code siw_proc_send}: an untagged segment into the receive its message consumes. */
    private void send(SiwQp q, Iwarp.Segment s, MemorySegment payload) {
        int op = s.opcode();
        if (op != Iwarp.OP_SEND && op != Iwarp.OP_SEND_SE && op != Iwarp.OP_SEND_INV && op != Iwarp.OP_SEND_SE_INV) {
            fail(q, new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_OPERATION,
                    Terminate.RDMAP_UNEXPECTED_OPCODE), EventType.QP_FATAL, "untagged opcode " + op);
            return;
        }
        if (s.mo() == 0) {
            if (s.msn() != q.rxMsn[Iwarp.QN_SEND] + 1) {
                fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                        Terminate.DDP_UT_INVALID_MSN), EventType.QP_FATAL, "MSN " + s.msn());
                return;
            }
            q.rxMsn[Iwarp.QN_SEND] = s.msn();
            q.recv = q.hw.takeRecv();
            q.recvBytes = 0;
            closeUntagged();
            if (q.recv == null) {
                // siw_proc_send: siw_rqe_get finds none; the TERMINATE alone, no async event
                fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                        Terminate.DDP_UT_NO_BUFFER), null, "no receive posted");
                return;
            }
        } else if (q.recv == null || s.msn() != q.rxMsn[Iwarp.QN_SEND] || s.mo() != q.recvBytes) {
            fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                    Terminate.DDP_UT_INVALID_MO), EventType.QP_FATAL, "MSN " + s.msn() + " MO " + s.mo());
            return;
        }
        RecvWqe r = q.recv;
        List<Sge> sgl = r.wr().sgList();
        if (untagged == null) {
            untagged = new SgeLeases(sgl.size());
        }
        try {
            long upTo = q.recvBytes + payload.byteSize();
            Sgl.write(mem, q.hw, sgl, s.mo(), payload, untagged, () -> upTo + Iwarp.following(in, start, end, s));
        } catch (AccessFault e) {
            // siw_send_check_ntoh finds the receive too short (LOC_LEN_ERR, QP_FATAL); siw_check_sge refuses its
            // memory (QP_ACCESS_ERR, and siw_rdmap_complete completes it with GENERAL_ERR); either way the receive
            // reports the bytes of the segments before
            LOG.debug("siw: qp {} receive placement refused", q.hw.qpNum(), e);
            boolean tooLong = e.status() == WcStatus.LOC_LEN_ERR;
            closeUntagged();
            q.recv = null;
            q.hw.completeRecv(r, new RecvResult(tooLong ? WcStatus.LOC_LEN_ERR : WcStatus.GENERAL_ERR, WcOpcode.RECV,
                    q.recvBytes, 0, 0, 0, 0, 0, true));
            fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                    tooLong ? Terminate.DDP_UT_TOO_LONG : Terminate.DDP_UT_NO_BUFFER),
                    tooLong ? EventType.QP_FATAL : EventType.QP_ACCESS_ERR, e.getMessage());
            return;
        }
        q.recvBytes += payload.byteSize();
        if (crcBad) {
            // siw_rdmap_complete(qp, -EINVAL) after the trailer: the receive ends with GENERAL_ERR and the bytes
            // placed so far
            q.recv = null;
            closeUntagged();
            q.hw.completeRecv(r, new RecvResult(WcStatus.GENERAL_ERR, WcOpcode.RECV, q.recvBytes, 0, 0, 0, 0, 0,
                    true));
            return;
        }
        if (!s.last()) {
            return;
        }
        q.recv = null;
        closeUntagged();
        boolean se = op == Iwarp.OP_SEND_SE || op == Iwarp.OP_SEND_SE_INV;
        if (op == Iwarp.OP_SEND_INV || op == Iwarp.OP_SEND_SE_INV) {
            if (!mem.invalidateRemote(q.hw, s.invStag())) {
                q.hw.completeRecv(r, RecvResult.error(WcStatus.REM_INV_REQ_ERR));
                fail(q, new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_PROTECTION,
                        Terminate.RDMAP_CANNOT_INVALIDATE), EventType.QP_FATAL,
                        "STag 0x" + Integer.toHexString(s.invStag()) + " cannot be invalidated");
                return;
            }
            q.hw.completeRecv(r, RecvResult.sendWithInv(q.recvBytes, 0, s.invStag(), se));
        } else {
            q.hw.completeRecv(r, RecvResult.send(q.recvBytes, 0, se));
        }
    }

    /**
     * {@code siw_proc_rreq}, {@code siw_init_rresp}: a request beyond the connection's IRD (more READs outstanding
     * than it serves at once; the IRQ is sized from the IRD) is a catastrophic error of the stream, a TERMINATE of
     * the RDMAP layer, Remote Operation Error, code 0x07 (RFC 5040 section 7), with no async event; else the
     * response is queued for the TX thread as it came: its source is checked when the response is built
     * ({@code siw_qp_sq_proc_tx}, {@link Tx}). A READ counts as outstanding from its request until the last segment
     * of its response was handed to the stream, so a requester within its ORD never trips this: it sends the next
     * request only after that last segment arrived. An IRD of 0 counts as 1, as the requester's ORD does
     * ({@link Cep#ord}); siw's IRQ of size 0 takes none. A request whose FPDU fails its CRC is not answered
     * ({@code siw_rdmap_complete} runs {@code siw_init_rresp} only without error).
     */
    private void readRequest(SiwQp q, Iwarp.Segment s) {
        if (s.opcode() != Iwarp.OP_READ_REQUEST || s.payloadLength() < Iwarp.READ_REQUEST_BODY) {
            fail(q, new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_OPERATION,
                    Terminate.RDMAP_UNEXPECTED_OPCODE), EventType.QP_FATAL, "read request opcode " + s.opcode());
            return;
        }
        if (crcBad) {
            return;
        }
        ByteBuffer b = in.slice(s.payloadAt(), Iwarp.READ_REQUEST_BODY);
        ReadResponse r = new ReadResponse(b.getInt(), b.getLong(), b.getInt(), b.getInt(), b.getLong());
        q.rxMsn[Iwarp.QN_READ_REQUEST] = s.msn();
        int ird = Math.max(1, cep.negotiatedIrd);
        int outstanding = q.inboundReads.incrementAndGet();
        if (outstanding > ird) {
            fail(q, new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_OPERATION,
                    Terminate.RDMAP_CATASTROPHIC_STREAM), null, "READ request " + outstanding
                    + " outstanding exceeds IRD " + ird);
            return;
        }
        q.irq.add(r);
        dev.tx.kick(q);
    }

    /**
     * {@code siw_proc_terminate}: the peer found an error and names it; siw logs it and returns {@code -ECONNRESET}
     * whatever it says, so {@code siw_tcp_rx_data} completes nothing ({@code run_completion = 0}: the READ the
     * TERMINATE concerns is not failed apart) and drops the connection ({@code siw_qp_cm_drop(qp, 1)}). The
     * endpoint's {@code SIW_CM_WORK_CLOSE_LLP} reports CLOSE, without DISCONNECT, and its release
     * ({@code siw_qp_llp_close}) moves the QP to ERR, where {@code siw_sq_flush} and {@code siw_rq_flush} complete
     * everything outstanding with WR_FLUSH_ERR, that READ included. No async event: neither function raises one.
     * A connection its QP's modify already took over ({@code rx_suspend}) reads nothing more.
     */
    private void terminated(SiwQp q, Iwarp.Segment s) {
        Terminate t = s.payloadLength() >= Iwarp.TERMINATE_BODY
                ? Terminate.of(in.getInt(s.payloadAt()))
                : new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_OPERATION, 0xff);
        draining = true;
        letGo();
        if (cep.isDisassociated()) {
            LOG.debug("siw: qp {} ignores {}: its connection is being dropped", q.hw.qpNum(), t);
            return;
        }
        LOG.debug("siw: qp {} received {}", q.hw.qpNum(), t);
        dev.terminated(t);
        q.apartFromTx(() -> q.connectionGone(cep));
        dev.tx.kick(q); // a post while the engine was held here set TxCtx.again: the TX thread takes it
        cep.lost(t + " from the peer", false);
    }

    /**
     * {@code siw_init_terminate}, then {@code siw_tcp_rx_data}'s error path: {@code siw_qp_cm_drop(qp, 1)} stops the
     * receive ({@code rx_suspend}: what follows is drained) and the endpoint's {@code SIW_CM_WORK_CLOSE_LLP} sends
     * the TERMINATE, reports CLOSE alone (no DISCONNECT, whatever the peer does after) and releases the endpoint,
     * whose {@code siw_qp_llp_close} moves the QP to ERR, flushing what was outstanding. Here the QP goes to ERR at
     * once, then raises {@code event} if the check that failed raises one ({@code siw_qp_event}; most do not), so
     * that a query after the event sees ERR; the TX thread sends the TERMINATE and drops the connection
     * ({@link Tx}).
     *
     * @param event the async event, or null for none
     */
    private void fail(SiwQp q, Terminate t, EventType event, String why) {
        LOG.debug("siw: qp {} terminates the stream: {} ({})", q == null ? 0 : q.hw.qpNum(), t, why);
        draining = true;
        letGo();
        if (q == null) {
            cep.lost(why, false);
            return;
        }
        cep.disassociate(); // the peer's end of the stream, once it reads the TERMINATE, is reported by nobody
        q.terminate = t;
        q.hw.enterError(); // the TX thread still sends the TERMINATE: it looks at q.terminate, not the state
        if (event != null) {
            q.hw.raiseEvent(event);
        }
        dev.tx.kick(q);
    }

    /** Closes the leases of the messages being placed; a message that goes on takes new ones. */
    private void letGo() {
        if (tagged != null) {
            tagged.close();
        }
        if (untagged != null) {
            untagged.close();
        }
    }

    private void closeTagged() {
        if (tagged != null) {
            tagged.close();
            tagged = null;
        }
    }

    private void closeUntagged() {
        if (untagged != null) {
            untagged.close();
            untagged = null;
        }
    }
}
