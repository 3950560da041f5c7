package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.EventType;
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

/**
 * The receive path of one connection ({@code siw_qp_rx.c}: {@code siw_tcp_rx_data}, {@code siw_proc_send},
 * {@code siw_proc_write}, {@code siw_proc_rreq}, {@code siw_proc_rresp}, {@code siw_proc_terminate}): FPDUs read
 * off the stream and their CRC checked, tagged segments placed through the STag they name (RDMA WRITE, READ
 * responses) with the access the core checks, untagged ones into the posted receive at their message offset, READ
 * requests checked and queued for the TX thread. A message's buffers are leased once for the bytes of it that were
 * read off the stream ({@link SgeLeases}, as {@code siw_proc_send} and {@code siw_proc_write} resolve the memory on
 * the first segment and keep it for the message) and let go when it ends, when the stream fails or is terminated,
 * and before the thread waits for more bytes; a WRITE's or SEND's STag is checked at every segment placed through
 * such a lease, as {@code siw_check_mem} looks at {@code stag_valid} for every segment. A READ's sink is checked
 * and leased whole on its response's first segment and the lease retained to the READ's end, across waits, as
 * {@code siw_proc_rresp} keeps {@code wqe->mem[0]}. An error the peer caused is answered as {@code siw_qp_rx.c}
 * answers it: the TERMINATE it sets up (RFC 5040 section 7), if any, the async event it raises, if any, the message
 * it was found in completed in error, and the QP to ERR; the stream is then only drained.
 *
 * <p>This class reads the stream and follows {@code siw_qp_rx.c}'s steps around the placement: the FPDU and its CRC,
 * the header ({@code siw_get_hdr}), the dispatch by opcode, the WRITE ({@code siw_proc_write}), the READ request
 * ({@code siw_proc_rreq}), the TERMINATE ({@code siw_proc_terminate}) and the error's end. A SEND's segments go to
 * {@link RxSend} ({@code siw_proc_send}), a Read Response's to {@link RxReadResponse} ({@code siw_proc_rresp}),
 * each with the state it keeps across segments.
 */
final class Rx {
    private static final Logger LOG = LoggerFactory.getLogger(Rx.class);

    private final Cep cep;
    private final SiwProvider dev;
    private final MemoryAccess mem;
    /** {@code siw_proc_rresp}: the Read Responses' placement and the READ's sink kept across waits. */
    private final RxReadResponse rresp;
    /** {@code siw_proc_send}: the SENDs' placement into their receives and the receives' completion. */
    private final RxSend send;
    /**
     * What was read off the stream: FPDUs from {@link #start} to {@link #end}, read as much as is there; direct, so
     * that the stream's read puts the bytes here (into a heap buffer NIO reads into a temporary direct one and
     * copies, IOUtil.read).
     */
    private final ByteBuffer in = ByteBuffer.allocateDirect(1 << 20);
    private final MemorySegment inSeg = MemorySegment.ofBuffer(in);
    private int start;
    private int end;
    /**
     * Where the FPDU being processed starts in {@link #in} (its MPA length): a failed segment's headers are copied
     * from there into its TERMINATE ({@code srx->hdr}), and only then.
     */
    private int fpduAt;
    private boolean draining;
    /**
     * The FPDU being processed failed its CRC. siw checks the CRC in the trailer ({@code siw_get_trailer}), after the
     * segment's payload was placed, and {@code siw_rdmap_complete} then ends the message it belongs to in error: a
     * receive or a READ completes with GENERAL_ERR, a READ request is not answered.
     */
    private boolean crcBad;
    /** The leases of the WRITE being placed and the STag it names, or null between messages. */
    private SgeLeases tagged;
    private int taggedStag;
    /**
     * {@code rx_tagged} and {@code rx_untagged}: whether the last segment of each kind did not end its message
     * ({@code more_ddp_segs}) and that message's opcode ({@code prev_rdmap_op}).
     */
    private boolean taggedMore;
    private int taggedOp;
    private boolean untaggedMore;
    private int untaggedOp;
    /** The segment being processed starts its message ({@code first_ddp_seg}). */
    private boolean first;
    /** The STag and tagged offset the WRITE in progress has reached ({@code srx->ddp_stag}, {@code ddp_to}). */
    private int writeStag;
    private long writeTo;
    /** Where the thread waits for the stream to have bytes: the stream is non-blocking, for the sender's sake. */
    private final Selector readable;
    /** {@link SiwProvider#afterFpdu} as it was when the stream was taken over: null but in tests. */
    private final Runnable afterFpdu;

    /**
     * Takes over the established stream: {@code TCP_NODELAY}, and non-blocking mode, so that the transmit engine
     * writes with {@code MSG_DONTWAIT} semantics ({@link Tx}), which sends nothing before; this thread then waits
     * for bytes in a selector.
     */
    Rx(Cep cep) throws IOException {
        this.cep = cep;
        this.dev = cep.dev;
        this.mem = dev.memory();
        this.afterFpdu = dev.afterFpdu;
        this.rresp = new RxReadResponse(this, dev, mem);
        this.send = new RxSend(this, dev, mem);
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
            rresp.close(); // the stream is over: the READ is flushed
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
            fpduAt = at;
            start += total;
            cep.received += total;
            if (draining || cep.isDisassociated()) {
                rresp.close(); // the READ was flushed (siw_rq_flush puts wqe->mem[0])
                continue; // rx_suspend: the QP drops the connection, nothing more is read from it
            }
            SiwQp q = cep.qp;
            Iwarp.Segment s = header(q, at + 2, ulpdu);
            if (s == null) {
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
            if (afterFpdu != null) {
                afterFpdu.run();
            }
        }
    }

    /**
     * {@code siw_get_hdr}: the DDP version (a TERMINATE of the DDP layer, Tagged or Untagged Buffer Error as the
     * tagged flag says), the RDMAP version and the opcode (RDMAP layer, Remote Operation Error, Invalid RDMAP
     * Version or Unexpected Opcode), none of them with an async event or a completion; then the headers the opcode
     * announces, and whether the segment starts a message or continues the one in progress of its kind (tagged or
     * untagged, {@code more_ddp_segs}). A segment of another opcode inside that message is a "packet intersection":
     * {@code -EPROTO} with no TERMINATE ({@link #intersected}). A ULPDU too short for its headers cannot be followed
     * as siw does (it reads the headers on into the next FPDU): it is answered as a bad DDP header.
     *
     * @return the segment, or null when it was refused
     */
    private Iwarp.Segment header(SiwQp q, int at, int ulpdu) {
        if (ulpdu < Iwarp.TAGGED_HDR) {
            fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER, Terminate.DDP_UT_INVALID_VERSION),
                    null, "a ULPDU of " + ulpdu + " bytes");
            return null;
        }
        int ddp = in.get(at) & 0xff;
        int rdmap = in.get(at + 1) & 0xff;
        if ((ddp & 0x03) != Iwarp.DDP_VERSION) {
            boolean t = (ddp & Iwarp.DDP_TAGGED) != 0;
            fail(q, new Terminate(Terminate.LAYER_DDP, t ? Terminate.DDP_TAGGED_BUFFER : Terminate.DDP_UNTAGGED_BUFFER,
                    t ? Terminate.DDP_T_INVALID_VERSION : Terminate.DDP_UT_INVALID_VERSION), null,
                    "DDP version " + (ddp & 0x03));
            return null;
        }
        if (rdmap >>> 6 != 1) {
            fail(q, new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_OPERATION,
                    Terminate.RDMAP_INVALID_VERSION), null, "RDMAP version " + (rdmap >>> 6));
            return null;
        }
        int op = rdmap & 0x0f;
        if (op > Iwarp.OP_TERMINATE) {
            fail(q, new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_OPERATION,
                    Terminate.RDMAP_UNEXPECTED_OPCODE), null, "opcode " + op);
            return null;
        }
        Iwarp.Segment s = ulpdu < Iwarp.headerLength(op) ? null : Iwarp.parse(in, at, ulpdu);
        if (s == null) {
            fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER, Terminate.DDP_UT_INVALID_VERSION),
                    null, "a ULPDU of " + ulpdu + " bytes for opcode " + op);
            return null;
        }
        boolean kindMore = s.tagged() ? taggedMore : untaggedMore;
        int kindOp = s.tagged() ? taggedOp : untaggedOp;
        if (kindMore && kindOp != op) {
            intersected(q, kindOp, op);
            return null;
        }
        first = !kindMore;
        if (s.tagged()) {
            taggedOp = op;
            taggedMore = !s.last();
        } else {
            untaggedOp = op;
            untaggedMore = !s.last();
        }
        return s;
    }

    /**
     * {@code siw_get_hdr}'s packet intersection: {@code siw_tcp_rx_data} ends the message in progress of opcode
     * {@code prev} in error ({@code siw_rdmap_complete(qp, -EPROTO)}: a receive completes with GENERAL_ERR and the
     * bytes placed, a READ with GENERAL_ERR, a WRITE lets go of its memory, a READ request goes unanswered) and drops
     * the connection with no TERMINATE set up: CLOSE alone, the QP in ERR, no async event.
     */
    private void intersected(SiwQp q, int prev, int op) {
        switch (q == null ? -1 : prev) {
            case Iwarp.OP_SEND, Iwarp.OP_SEND_INV, Iwarp.OP_SEND_SE, Iwarp.OP_SEND_SE_INV ->
                    send.intersected(q);
            case Iwarp.OP_READ_RESPONSE -> rresp.intersected(q);
            case Iwarp.OP_WRITE -> closeTagged();
            default -> {
            }
        }
        fail(q, null, null, "opcode " + op + " inside a message of opcode " + prev);
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

    /** {@code iwarp_pktinfo[opcode].rx_data}: the segment goes where its opcode says, whatever its queue number. */
    private void dispatch(SiwQp q, Iwarp.Segment s) {
        MemorySegment payload = inSeg.asSlice(s.payloadAt(), s.payloadLength());
        switch (s.opcode()) {
            case Iwarp.OP_WRITE -> write(q, s, payload);
            case Iwarp.OP_READ_RESPONSE -> rresp.segment(q, s, payload, first, crcBad);
            case Iwarp.OP_READ_REQUEST -> readRequest(q, s);
            case Iwarp.OP_TERMINATE -> terminated(q, s);
            default -> send.segment(q, s, payload, first, crcBad);
        }
    }

    /**
     * {@code siw_proc_write}: a tagged segment into the STag it names. A later segment must name the STag and the
     * tagged offset its message reached ({@code siw_write_check_ntoh}: DDP Tagged Buffer Error, Invalid STag or Base
     * or Bounds, and QP_FATAL); a zero-length WRITE is not checked at all. A refused WRITE raises QP_ACCESS_ERR only
     * where {@code siw_check_mem} refuses a region siw found: an STag that names no region on the message's first
     * segment ({@code siw_mem_id2obj} finds nothing, or the key differs) is answered with the TERMINATE alone.
     */
    private void write(SiwQp q, Iwarp.Segment s, MemorySegment payload) {
        long n = payload.byteSize();
        if (n > 0) {
            if (first) {
                writeStag = s.stag();
                writeTo = s.to();
            } else if (s.stag() != writeStag || s.to() != writeTo) {
                closeTagged();
                fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER, s.stag() != writeStag
                        ? Terminate.DDP_T_INVALID_STAG : Terminate.DDP_T_BASE_BOUNDS), EventType.QP_FATAL,
                        "WRITE segment at STag 0x" + Integer.toHexString(s.stag()) + " offset 0x"
                                + Long.toHexString(s.to()));
                return;
            }
            if (tagged == null || taggedStag != s.stag()) {
                closeTagged();
                tagged = new SgeLeases(1, dev.regions, WcStatus.REM_ACCESS_ERR); // siw_check_mem at every segment
                taggedStag = s.stag();
            }
            try {
                tagged.write(0, s.stag(), s.to(), () -> n + Iwarp.following(in, start, end, s), payload,
                        len -> mem.remote(q.hw, s.stag(), s.to(), len, Access.REMOTE_WRITE));
            } catch (AccessFault e) {
                LOG.debug("siw: qp {} tagged placement refused", q.hw.qpNum(), e);
                boolean unknown = first && !dev.regions.hasRegion(s.stag());
                fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER,
                        dev.regions.taggedError(q, s.stag(), s.to(), n)), unknown ? null : EventType.QP_ACCESS_ERR,
                        e.getMessage());
                return;
            }
            writeTo = s.to() + n;
        }
        if (crcBad || s.last()) {
            // siw_rdmap_complete after the trailer: the bytes are placed, the WRITE lets go of its memory
            closeTagged();
        }
    }

    /**
     * {@code siw_proc_rreq}, then {@code siw_rdmap_complete} once the request's last segment arrived with a good
     * CRC: a request carrying bytes after its header is {@code -EPROTO} with no TERMINATE (the connection dropped,
     * CLOSE alone); then {@code siw_init_rresp}: an MSN other than the one expected on queue 1 is a DDP Untagged
     * Buffer Error, Invalid MSN, and a request beyond the connection's IRD (more READs outstanding than it serves at
     * once; the IRQ is sized from the IRD) a catastrophic error of the stream, a TERMINATE of the RDMAP layer,
     * Remote Operation Error, code 0x07 (RFC 5040 section 7), neither with an async event; else the response is
     * queued for the TX thread as it came: its source is checked when the response is built
     * ({@code siw_qp_sq_proc_tx}, {@link TxEngine}). A READ counts as outstanding from its request until the last
     * segment of its response was handed to the stream, so a requester within its ORD never trips this: it sends the
     * next request only after that last segment arrived. An IRD of 0 counts as 1, as the requester's ORD does
     * ({@link Cep#ord}); siw's IRQ of size 0 takes none. The queue number and message offset are not looked at.
     */
    private void readRequest(SiwQp q, Iwarp.Segment s) {
        if (s.payloadLength() > Iwarp.READ_REQUEST_BODY) {
            fail(q, null, null, "a READ request with " + (s.payloadLength() - Iwarp.READ_REQUEST_BODY)
                    + " bytes of data");
            return;
        }
        if (crcBad || !s.last()) {
            return;
        }
        int expected = q.rxMsn[Iwarp.QN_READ_REQUEST] + 1;
        q.rxMsn[Iwarp.QN_READ_REQUEST] = expected;
        if (s.msn() != expected) {
            fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER, Terminate.DDP_UT_INVALID_MSN),
                    null, "READ request MSN " + s.msn() + ", expected " + expected);
            return;
        }
        ByteBuffer b = in.slice(s.payloadAt(), Iwarp.READ_REQUEST_BODY);
        ReadResponse r = new ReadResponse(b.getInt(), b.getLong(), b.getInt(), b.getInt(), b.getLong());
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
     * A connection its QP's modify already took over ({@code rx_suspend}) reads nothing more. With the M flag set,
     * the copied headers of the segment that failed are read for the log, as siw reads them.
     */
    private void terminated(SiwQp q, Iwarp.Segment s) {
        int word = in.getInt(s.payloadAt());
        Terminate t = Terminate.of(word);
        draining = true;
        letGo();
        if (cep.isDisassociated()) {
            LOG.debug("siw: qp {} ignores {}: its connection is being dropped", q.hw.qpNum(), t);
            return;
        }
        LOG.debug("siw: qp {} received {}", q.hw.qpNum(), t);
        int copied = s.payloadAt() + Iwarp.TERMINATE_BODY;
        if ((word & Terminate.FLAG_M) != 0 && s.payloadLength() >= Iwarp.TERMINATE_BODY + Terminate.COPY_TAGGED) {
            // siw_proc_terminate reads the copied headers for its log only
            LOG.debug("siw: qp {} TERMINATE reports opcode {}, DDP segment length {}", q.hw.qpNum(),
                    in.get(copied + 3) & 0x0f, in.getShort(copied) & 0xffff);
        }
        dev.terminated(t);
        q.apartFromTx(() -> q.connectionGone(cep));
        dev.tx.kick(q); // a post while the engine was held here set TxCtx.again: the TX thread takes it
        cep.lost(t + " from the peer", false);
    }

    /** The bytes of {@code s}'s message read off the stream in the FPDUs behind it ({@link Iwarp#following}). */
    long following(Iwarp.Segment s) {
        return Iwarp.following(in, start, end, s);
    }

    /** {@code t} with the headers of the FPDU being processed copied in ({@code srx->hdr}). */
    Terminate copyingHeaders(Terminate t) {
        return t.copying(in, fpduAt);
    }

    /**
     * {@code siw_init_terminate}, then {@code siw_tcp_rx_data}'s error path: {@code siw_qp_cm_drop(qp, 1)} stops the
     * receive ({@code rx_suspend}: what follows is drained) and the endpoint's {@code SIW_CM_WORK_CLOSE_LLP} sends
     * the TERMINATE, reports CLOSE alone (no DISCONNECT, whatever the peer does after) and releases the endpoint,
     * whose {@code siw_qp_llp_close} moves the QP to ERR, flushing what was outstanding and raising SQ_DRAINED when
     * requests waited in siw's ring ({@link SiwQp#rxFailed}; a completion's error status does not move the QP). Here
     * the QP goes to ERR at once, then raises {@code event} if the check that failed raises one ({@code siw_qp_event}; most do not), so
     * that a query after the event sees ERR; the TX thread sends the TERMINATE and drops the connection
     * ({@link Tx}). An error that set up no TERMINATE ({@code -EPROTO} of a packet intersection or a READ request
     * carrying data) drops the connection at once.
     *
     * @param t     the TERMINATE, or null for none
     * @param event the async event, or null for none
     */
    void fail(SiwQp q, Terminate t, EventType event, String why) {
        LOG.debug("siw: qp {} drops the stream: {} ({})", q == null ? 0 : q.hw.qpNum(), t, why);
        draining = true;
        letGo();
        if (q == null) {
            cep.lost(why, false);
            return;
        }
        // SIW_CM_WORK_CLOSE_LLP sends a TERMINATE set up before, if any; else this one, with the failed headers
        t = q.initTerminate(t == null ? null : copyingHeaders(t));
        cep.disassociate(); // the peer's end of the stream, once it reads the TERMINATE, is reported by nobody
        q.terminate = t;
        q.apartFromTx(q::rxFailed); // the TX thread still sends the TERMINATE: it looks at q.terminate, not the state
        if (event != null) {
            q.hw.raiseEvent(event);
        }
        if (t == null) {
            cep.lost(why, false); // nothing to send: CLOSE alone, at once
            return;
        }
        dev.tx.kick(q);
    }

    /**
     * Closes the leases of the messages being placed; a message that goes on takes new ones. A READ's retained sink
     * stays, unless the stream is being dropped (the READ failed or was flushed).
     */
    private void letGo() {
        if (tagged != null) {
            tagged.close();
        }
        send.letGo();
        if (draining || cep.isDisassociated()) {
            rresp.close();
        }
    }

    private void closeTagged() {
        if (tagged != null) {
            tagged.close();
            tagged = null;
        }
    }

}
