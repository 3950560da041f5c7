package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WrOpcode;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/**
 * A QP's transmit engine ({@code siw_qp_tx.c}: {@code siw_qp_sq_process}, {@code siw_qp_sq_proc_tx},
 * {@code siw_send_terminate}): a pending TERMINATE, then the READ responses the peer asked for, then the send
 * queue's requests in order, each message cut into DDP segments that fit one TCP segment of the netdev's MSS, each
 * framed as an MPA FPDU, gathered in the connection's {@link TxCtx} and handed to TCP without waiting
 * ({@code MSG_DONTWAIT}); and its failure branch (the TERMINATE, the drop that leaves the QP
 * in RTS, the failed request's completion). Run by the poster or the device's TX thread ({@link Tx}), never by two
 * at once ({@code tx_ctx.in_use}). SENDs and WRITEs complete once TCP took their last byte; a READ waits for its
 * response (a fenced request, or a READ beyond the connection's ORD, waits until the READs before it completed).
 * Local operations run through the core.
 */
final class TxEngine {
    private static final Logger LOG = LoggerFactory.getLogger(TxEngine.class);
    /** Requests one QP sends before the others get their turn ({@code SQ_USER_MAXBURST}). */
    private static final int BURST = 100;
    /** What the engine gathers before it hands the stream a write. */
    private static final int BUFFER = 256 << 10;

    /** How a run of the engine ended. */
    enum Outcome {
        /** Nothing more to send now. */
        IDLE,
        /** The burst is used up: more waits, after the other QPs. */
        MORE,
        /** TCP's send buffer is full: resume on write space. */
        BLOCKED,
        /** Another thread runs the engine of this QP; it will see the new work. */
        BUSY,
        /** The stream failed; the TX thread ends the connection. */
        FAILED,
        /** The TERMINATE was handed to TCP: the TX thread drops the connection ({@code siw_qp_cm_drop}). */
        DROP
    }

    private final SiwProvider dev;
    /** The device's memory access, there once the device is registered ({@link #start}). */
    private MemoryAccess mem;
    /** The netdev's MSS: one FPDU per TCP segment ({@code c_tx->tcp_seglen}). */
    private final int mss;

    TxEngine(SiwProvider dev, int mss) {
        this.dev = dev;
        this.mss = mss;
    }

    /** Takes the device's memory access: the device is registered. */
    void start() {
        mem = dev.memory();
    }

    /**
     * Runs {@code q}'s engine on this thread unless another thread runs it ({@code tx_ctx.in_use}); whoever holds
     * it runs once more when work came while it ran.
     */
    Outcome drive(SiwQp q, Cep c, TxCtx x) {
        if (c.ch.isBlocking()) {
            return Outcome.IDLE; // no FPDU before the receive path made the stream non-blocking; it kicks the QP then
        }
        x.again = true;
        Outcome o = Outcome.BUSY;
        while (x.again && x.inUse.compareAndSet(false, true)) {
            x.again = false;
            try {
                o = x.failure != null ? Outcome.FAILED : process(q, c, x);
            } catch (IOException | RuntimeException e) {
                x.failure = e;
                o = Outcome.FAILED;
            } finally {
                x.endPass();
                x.inUse.set(false);
            }
            if (o != Outcome.IDLE) {
                break;
            }
        }
        return o;
    }

    /** {@code siw_qp_sq_process}: sends until nothing is left, the burst is used up or the stream is full. */
    private Outcome process(SiwQp q, Cep c, TxCtx x) throws IOException {
        x.allocate(BUFFER + mss);
        int n = 0;
        while (true) {
            if (!drain(c, x)) {
                return Outcome.BLOCKED;
            }
            settle(q, x);
            if (q.cep != c || c.isGone()) {
                return Outcome.IDLE;
            }
            Terminate t = q.terminate;
            if (t != null) {
                if (!q.terminateSent) {
                    x.endMessage(); // the QP is in ERR: the message in progress is flushed, not finished
                    terminate(q, c, x, t);
                    continue;
                }
                return Outcome.DROP;
            }
            if (x.msg != null) {
                segments(q, c, x);
                continue;
            }
            ReadResponse r = q.irq.poll();
            if (r != null) {
                // siw_activate_tx: the response taken off the IRQ (irq_get++) frees its entry as it starts
                q.inboundReads.decrementAndGet();
                x.msg = TxMessage.response(r);
                continue;
            }
            if (n == BURST) {
                return Outcome.MORE;
            }
            SendWqe w = q.held != null ? q.held : q.hw.nextSend();
            if (w == null) {
                return Outcome.IDLE;
            }
            q.held = null;
            boolean read = w.opcode() == WrOpcode.RDMA_READ;
            if ((w.fenced() && q.readsInFlight() > 0) || (read && q.readsInFlight() >= c.ord)) {
                q.held = w; // the response path kicks the QP when a READ completes
                return Outcome.IDLE;
            }
            n++;
            start(q, c, x, w, q.started(w));
        }
    }

    /** Completes what TCP took in full: the SEND or WRITE whose last byte left. */
    private static void settle(SiwQp q, TxCtx x) {
        Pending p = x.owed;
        if (p != null) {
            x.owed = null;
            q.complete(p, WcStatus.SUCCESS); // iWARP acknowledges nothing: done before a peer can answer
        }
    }

    /** Begins request {@code w}: a SEND or WRITE becomes the message in progress, the rest is done at once. */
    private void start(SiwQp q, Cep c, TxCtx x, SendWqe w, Pending p) {
        WcStatus s;
        try {
            s = switch (w.wr()) {
                case SendWr.Send sd -> {
                    x.msg = TxMessage.send(w, p, (sd.sendFlags() & SendFlags.SOLICITED) != 0
                            ? Iwarp.OP_SEND_SE : Iwarp.OP_SEND, 0, ++q.txMsn[Iwarp.QN_SEND]);
                    yield null;
                }
                case SendWr.SendWithInv si -> {
                    x.msg = TxMessage.send(w, p, (si.sendFlags() & SendFlags.SOLICITED) != 0
                            ? Iwarp.OP_SEND_SE_INV : Iwarp.OP_SEND_INV, si.invalidateRkey(), ++q.txMsn[Iwarp.QN_SEND]);
                    yield null;
                }
                case SendWr.RdmaWrite wr -> {
                    x.msg = TxMessage.write(w, p, wr.rkey(), wr.remoteAddr());
                    yield null;
                }
                case SendWr.RdmaRead rd -> readRequest(q, c, x, w, rd, p);
                case SendWr.LocalInv li -> mem.executeLocal(q.hw, w);
                case SendWr.BindMw b -> mem.executeLocal(q.hw, w);
                default -> WcStatus.LOC_QP_OP_ERR; // refused at post (SiwProvider.checkSend)
            };
        } catch (AccessFault e) {
            LOG.debug("siw: qp {} request {} refused locally", q.hw.qpNum(), w.wrId(), e);
            s = e.status();
        }
        if (s == null) {
            return;
        }
        if (s == WcStatus.SUCCESS) {
            q.complete(p, s);
        } else {
            LOG.debug("siw: qp {} local operation {} failed: {}", q.hw.qpNum(), w.wrId(), s);
            txFailed(q, c, x, p, false); // siw_qp_sq_proc_local's error: no TERMINATE set up
        }
    }

    /**
     * Cuts the message in progress into FPDUs until it is done or the buffer is full ({@code siw_qp_sq_proc_tx});
     * a done SEND or WRITE completes once TCP took the last byte, a done READ response frees its IRD slot at once.
     */
    private void segments(SiwQp q, Cep c, TxCtx x) {
        TxMessage m = x.msg;
        int hdr = m.tagged ? Iwarp.TAGGED_HDR : Iwarp.UNTAGGED_HDR;
        int max = mss - Mpa.FPDU_OVERHEAD - hdr - 3;
        while (x.pos <= BUFFER) {
            int n = (int) Math.min(max, m.length - m.off);
            boolean last = m.off + n == m.length;
            int at = x.pos;
            ByteBuffer b = x.out.slice(at + 2, hdr);
            if (m.tagged) {
                Iwarp.tagged(b, m.opcode, last, m.stag, m.to + m.off);
            } else {
                Iwarp.untagged(b, m.opcode, last, m.stag, Iwarp.QN_SEND, (int) m.to, (int) m.off);
            }
            MemorySegment dst = x.outSeg.asSlice(at + 2 + hdr, n);
            if (m.response != null) {
                if (!respond(q, c, x, m, dst)) {
                    return;
                }
            } else {
                try {
                    payload(q, m, dst);
                } catch (AccessFault e) {
                    LOG.debug("siw: qp {} request {} refused locally", q.hw.qpNum(), m.wqe.wrId(), e);
                    txFailed(q, c, x, m.pending, true);
                    return;
                }
            }
            end(c, x, at, hdr + n);
            m.off += n;
            if (last) {
                x.endMessage();
                if (m.response == null) {
                    x.owed = m.pending;
                }
                return;
            }
        }
    }

    /** Reads {@code dst.byteSize()} bytes of {@code m}'s payload where it got to, one lease per SGE and pass. */
    private void payload(SiwQp q, TxMessage m, MemorySegment dst) {
        MemorySegment inline = m.wqe.inlineData();
        if (inline != null) {
            MemorySegment.copy(inline, m.off, dst, 0, dst.byteSize());
        } else {
            Sgl.read(mem, q.hw, m.wqe.wr().sgList(), m.off, dst, m.leases);
        }
    }

    /**
     * Reads a Read Response segment's bytes from the source STag, through one lease of the whole source per pass
     * when it is stable; a refused source is the responder's error, found here as {@code siw_qp_sq_proc_tx} finds
     * it ({@code siw_check_sgl_tx} on an {@code SIW_OP_READ_RESPONSE}, not when the request arrived): a TERMINATE
     * of the RDMAP layer, Remote Protection Error, tells the peer, naming the range refused, and the connection is
     * dropped ({@link #txDrop}: the QP stays in RTS, QP_REQ_ERR).
     *
     * @return false when refused (the segment is dropped, the TERMINATE pending)
     */
    private boolean respond(SiwQp q, Cep c, TxCtx x, TxMessage m, MemorySegment dst) {
        ReadResponse r = m.response;
        int n = (int) dst.byteSize();
        if (n == 0) {
            return true;
        }
        boolean whole = !m.leases.tried(0);
        try {
            DmaLease l = m.leases.take(0, () -> mem.remote(q.hw, r.srcStag(), r.srcTo(), m.length,
                    Access.REMOTE_READ));
            whole = false;
            if (l == null) {
                try (DmaLease piece = mem.remote(q.hw, r.srcStag(), r.srcTo() + m.off, n, Access.REMOTE_READ)) {
                    piece.read(0, dst);
                }
            } else {
                try {
                    l.read(m.off, dst);
                } finally {
                    if (!m.leases.held(0)) {
                        l.close();
                    }
                }
            }
            return true;
        } catch (AccessFault e) {
            LOG.debug("siw: qp {} read source refused while responding", q.hw.qpNum(), e);
            x.endMessage();
            long to = whole ? r.srcTo() : r.srcTo() + m.off;
            long len = whole ? m.length : n;
            x.txError = true;
            c.disassociate(); // rx_suspend, and the peer's end of the stream is reported by nobody
            q.terminate = q.initTerminate(new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_PROTECTION,
                    dev.regions.rdmapError(q, r.srcStag(), to, len, Access.REMOTE_READ)).copyingReadRequest(r, m.off));
            return false;
        }
    }

    /**
     * A READ's request; its sink must take tagged writes (the response is one): a sink not remotely writable is
     * refused here, before anything is sent, with LOC_PROT_ERR, and the QP goes to ERR (a rule of iWARP this driver
     * adds: siw checks no READ sink when it sends the request). A sink whose STag was invalidated is not refused here:
     * the request goes out and its response is refused as siw refuses it ({@code siw_proc_rresp}).
     */
    private WcStatus readRequest(SiwQp q, Cep c, TxCtx x, SendWqe w, SendWr.RdmaRead rd, Pending p) {
        Sge sink = rd.sgList().getFirst();
        if (sink.length() > 0) {
            try {
                mem.remote(q.hw, sink.lkey(), sink.addr(), sink.length(), Access.REMOTE_WRITE).close();
            } catch (AccessFault e) {
                if (!dev.regions.invalidated(sink.lkey())) {
                    LOG.debug("siw: qp {} READ {} has a sink that takes no tagged writes", q.hw.qpNum(), w.wrId(), e);
                    q.complete(p, WcStatus.LOC_PROT_ERR); // a local buffer refused: the request never leaves
                    q.hw.enterError(); // the iWARP rule is this driver's (siw checks no sink here): the QP fails
                    return null;
                }
            }
        }
        int at = x.pos;
        ByteBuffer b = x.out.slice(at + 2, Iwarp.UNTAGGED_HDR + Iwarp.READ_REQUEST_BODY);
        Iwarp.untagged(b, Iwarp.OP_READ_REQUEST, true, 0, Iwarp.QN_READ_REQUEST, ++q.txMsn[Iwarp.QN_READ_REQUEST], 0);
        Iwarp.readRequest(b, sink.lkey(), sink.addr(), (int) sink.length(), rd.rkey(), rd.remoteAddr());
        q.readSent(p); // before the request leaves: its response may come back at once
        end(c, x, at, Iwarp.UNTAGGED_HDR + Iwarp.READ_REQUEST_BODY);
        return null;
    }

    /**
     * {@code siw_send_terminate}: the TERMINATE on queue 2 with the failed segment's headers it copies, if any;
     * once TCP took it the connection is dropped ({@link #drop}).
     */
    private void terminate(SiwQp q, Cep c, TxCtx x, Terminate t) {
        q.terminateSent = true;
        int at = x.pos;
        t.put(x.out.slice(at + 2, t.ulpdu()), ++q.txMsn[Iwarp.QN_TERMINATE]);
        end(c, x, at, t.ulpdu());
        dev.terminateSent(t); // counted before the peer can see it
    }

    /** Seals the FPDU at {@code at} whose ULPDU is {@code ulpdu} bytes and shows it to the capture. */
    private void end(Cep c, TxCtx x, int at, int ulpdu) {
        int len = Mpa.seal(x.out, at, ulpdu);
        dev.captureData(c, x.out, at, len);
        x.pos = at + len;
    }

    /**
     * Hands TCP what the buffer holds, as much as it takes without waiting ({@code MSG_DONTWAIT}).
     *
     * @return whether it took all of it; if not, the rest (a partial FPDU, perhaps) waits for write space
     */
    private static boolean drain(Cep c, TxCtx x) throws IOException {
        if (x.head < x.pos) {
            ByteBuffer b = x.view.limit(x.pos).position(x.head);
            while (b.hasRemaining()) {
                if (c.ch.write(b) == 0) {
                    x.head = b.position();
                    x.blocked = true;
                    return false;
                }
            }
        }
        x.head = 0;
        x.pos = 0;
        x.blocked = false;
        return true;
    }

    /**
     * The TERMINATE left: the connection is dropped with CLOSE alone. After an error the receive path found, the QP
     * is in ERR already ({@code SIW_CM_WORK_CLOSE_LLP}, whose release runs {@code siw_qp_llp_close}). After an error
     * of the transmit side ({@link #txFailed}) the QP stays in RTS.
     */
    void drop(SiwQp q, Cep c, TxCtx x) {
        if (x.txError) {
            txDrop(q, c, x, true);
        } else {
            c.dropAfterTerminate("TERMINATE sent: " + q.terminate);
        }
    }

    /**
     * {@code siw_qp_sq_process}'s failure branch, once the TERMINATE {@link #txFailed} set up left (if it set one up,
     * {@code halfClose}): {@code siw_qp_cm_drop(qp, 0)} drops the connection at once (CLOSE alone, the stream closed)
     * and never calls {@code siw_qp_llp_close}, so the QP leaves its connection and stays in RTS with nothing
     * flushed; sends posted from now on are taken and sent nowhere ({@code tx_suspend}) until a modify to ERR flushes
     * them. A request of the send queue completes with LOC_QP_OP_ERR and raises QP_FATAL, a READ response raises
     * QP_REQ_ERR ({@code siw_sqe_complete}, {@code siw_qp_event}).
     */
    private static void txDrop(SiwQp q, Cep c, TxCtx x, boolean halfClose) {
        Pending p = x.failed;
        x.failed = null;
        if (p != null) {
            q.complete(p, WcStatus.LOC_QP_OP_ERR); // a completion never moves a siw QP (completionErrorMovesQp)
        }
        q.detach(c); // the connection's end then leaves the QP's state alone
        if (halfClose) {
            c.dropAfterTerminate("TERMINATE sent: " + q.terminate);
        } else {
            c.lost("a local operation failed", false);
        }
        if (!q.destroyed) {
            q.hw.raiseEvent(p != null ? EventType.QP_FATAL : EventType.QP_REQ_ERR);
        }
    }

    /**
     * A request of the send queue failed locally in {@code siw_qp_sq_process}: {@code siw_qp_sq_proc_tx} refusing
     * its SGL ({@code siw_check_sgl_tx}) sets up the TERMINATE of {@code siw_init_terminate(qp,
     * TERM_ERROR_LAYER_RDMAP, RDMAP_ETYPE_CATASTROPHIC, RDMAP_ECODE_UNSPECIFIED, 1)}, sent before the drop
     * ({@link #drop}); a local operation ({@code siw_qp_sq_proc_local}) sets up none and drops the connection at once
     * ({@link #txDrop}). A TERMINATE set up before and still waiting ({@link SiwQp#termInfo}) goes out instead.
     */
    private static void txFailed(SiwQp q, Cep c, TxCtx x, Pending p, boolean terminate) {
        x.endMessage();
        x.txError = true;
        x.failed = p;
        Terminate t = q.initTerminate(terminate ? new Terminate(Terminate.LAYER_RDMAP,
                Terminate.RDMAP_LOCAL_CATASTROPHIC, Terminate.RDMAP_UNSPECIFIED) : null);
        if (t != null) {
            c.disassociate(); // rx_suspend, and the peer's end of the stream is reported by nobody
            q.terminate = t;
        } else {
            txDrop(q, c, x, false);
        }
    }
}
