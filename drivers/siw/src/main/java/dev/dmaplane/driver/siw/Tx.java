package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
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
import java.nio.channels.CancelledKeyException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.time.Duration;
import java.util.HashSet;
import java.util.Iterator;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The transmit engine ({@code siw_qp_tx.c}: {@code siw_qp_sq_process}, {@code siw_qp_sq_proc_tx},
 * {@code siw_send_terminate}) and the device's TX thread ({@code siw_run_sq}). For a QP the engine sends a pending
 * TERMINATE, then the READ responses the peer asked for, then the send queue's requests in order, each message cut
 * into DDP segments that fit one TCP segment of the netdev's MSS, each framed as an MPA FPDU. The stream is
 * non-blocking: what TCP does not take stays in the connection's {@link TxCtx}, and the engine resumes from there
 * when the TX thread sees write space ({@code sk_write_space}, {@code siw_qp_llp_write_space}, {@code siw_sq_resume}).
 * The poster runs the engine itself when the send queue was idle, as {@code siw_post_send} does; otherwise, and for
 * the work the receive path queues, the TX thread does ({@code siw_sq_start}). SENDs and WRITEs complete once TCP
 * took their last byte; a READ waits for its response (a fenced request, or a READ beyond the connection's ORD,
 * waits until the READs before it completed). Local operations run through the core.
 *
 * <p>Over 600 lines: it follows {@code siw_qp_tx.c}, whose {@code siw_qp_sq_process} holds the engine's loop and its
 * failure branch (the TERMINATE, the drop that leaves the QP in RTS, the failed request's completion) side by side;
 * the TX thread's selector and run queue are the part to move out next.
 */
final class Tx {
    private static final Logger LOG = LoggerFactory.getLogger(Tx.class);
    private static final Duration JOIN = Duration.ofSeconds(10);
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
    private MemoryAccess mem;
    private final int mss;
    private final ConcurrentLinkedQueue<SiwQp> runq = new ConcurrentLinkedQueue<>();
    private final SiwQp stop = new SiwQp(null);
    /** Whether the thread waits in its selector (a kick must wake it). */
    private volatile boolean idle;
    /** A stream was closed since the thread last let go of closed streams' registrations ({@link #release}). */
    private final AtomicBoolean closes = new AtomicBoolean();
    /** Runs on the thread before each QP's turn, or null: how a test keeps the thread busy, as other QPs would. */
    volatile Runnable beforeTurn;
    private Selector selector;
    /** QPs whose stream the thread waits to take more (its thread only). */
    private final Set<SiwQp> armed = new HashSet<>();
    private Thread thread;

    Tx(SiwProvider dev, int mss) {
        this.dev = dev;
        this.mss = mss;
    }

    /** Starts the thread; the device is registered (its memory access is there). */
    synchronized void start() {
        mem = dev.memory();
        try {
            selector = Selector.open();
        } catch (IOException e) {
            throw new ErrnoException(Errno.EMFILE, "siw: no selector for the TX thread of " + dev.name() + ": "
                    + e.getMessage(), e);
        }
        thread = Thread.ofPlatform().name("siw-tx-" + dev.name()).daemon().start(this::run);
    }

    /** Stops the thread after the work queued before; the connections are closed first. */
    synchronized void stop() {
        if (thread == null) {
            return;
        }
        runq.add(stop);
        selector.wakeup();
        try {
            if (!thread.join(JOIN)) {
                LOG.error("siw: the TX thread of {} did not end within {}", dev.name(), JOIN);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        thread = null;
    }

    /** Queues {@code q} for the thread ({@code siw_sq_start}). */
    void kick(SiwQp q) {
        if (q.queued.compareAndSet(false, true)) {
            runq.add(q);
            if (idle) {
                selector.wakeup();
            }
        }
    }

    /**
     * A stream was closed: the thread lets go of its registration before it serves the next QP or waits, so that the
     * socket is really closed (a registered channel's socket closes only once its key left every selector it was
     * registered with, at that selector's next selection), however busy the thread is.
     */
    void wake() {
        closes.set(true);
        Selector s = selector;
        if (s != null) {
            s.wakeup();
        }
    }

    /** The registrations the selector holds, cancelled ones not yet let go of included. */
    int registrations() {
        Selector s = selector;
        return s == null || !s.isOpen() ? 0 : s.keys().size();
    }

    /**
     * {@code siw_post_send}'s direct send: work was posted on {@code q}; the poster runs the engine itself when no
     * other thread does and the stream has room, and hands the QP to the TX thread when the stream is full, the
     * burst is used up or the stream failed. A QP that waits for write space is left to the TX thread, which
     * resumes it.
     */
    void post(SiwQp q, Cep c) {
        TxCtx x = q.tx;
        if (x.blocked) {
            return; // the engine resumes on write space and takes the new work then
        }
        Outcome o = drive(q, c, x);
        if (o == Outcome.BLOCKED || o == Outcome.MORE || o == Outcome.FAILED || o == Outcome.DROP) {
            kick(q);
        }
    }

    private void run() {
        try {
            while (true) {
                release();
                SiwQp q = runq.poll();
                if (q == null) {
                    idle = true;
                    if (runq.isEmpty()) {
                        selector.select();
                    } else {
                        selector.selectNow();
                    }
                    idle = false;
                    writable();
                    continue;
                }
                if (q == stop) {
                    return;
                }
                q.queued.set(false);
                Runnable hook = beforeTurn;
                if (hook != null) {
                    hook.run();
                }
                serve(q);
                if (!armed.isEmpty()) {
                    selector.selectNow();
                    writable();
                }
            }
        } catch (IOException e) {
            LOG.error("siw: the TX thread of {} lost its selector", dev.name(), e);
        } finally {
            try {
                selector.close();
            } catch (IOException e) {
                LOG.error("siw: closing the TX selector of {} failed", dev.name(), e);
            }
        }
    }

    /**
     * Lets go of the registrations of the streams closed since the last time: a selection deregisters the cancelled
     * keys, so their sockets close now rather than when the thread next runs out of work; the write space it finds
     * resumes those QPs.
     */
    private void release() throws IOException {
        if (closes.get() && closes.compareAndSet(true, false)) {
            selector.selectNow();
            writable();
        }
    }

    /** The TX thread's turn for {@code q}: run the engine, then wait for write space or requeue as it ended. */
    private void serve(SiwQp q) {
        Cep c = q.cep;
        // a TERMINATE goes out even while the passive side waits for the RTR message (siw_send_terminate needs
        // only the socket)
        if (c == null || c.isGone() || (!c.isEstablished() && q.terminate == null) || q.destroyed) {
            return;
        }
        TxCtx x = q.tx;
        Outcome o = drive(q, c, x);
        switch (o) {
            case MORE -> kick(q); // more may wait: let the other QPs have their turn first
            case BLOCKED -> arm(q, c, x);
            case FAILED -> fail(q, c, x);
            case DROP -> drop(q, c, x);
            case IDLE, BUSY -> {
            }
        }
    }

    /**
     * The TERMINATE left: the connection is dropped with CLOSE alone. After an error the receive path found, the QP
     * is in ERR already ({@code SIW_CM_WORK_CLOSE_LLP}, whose release runs {@code siw_qp_llp_close}). After an error
     * of the transmit side ({@link #txFailed}) the QP stays in RTS.
     */
    private void drop(SiwQp q, Cep c, TxCtx x) {
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

    /** Waits for {@code q}'s stream to take more ({@code sk_write_space}). */
    private void arm(SiwQp q, Cep c, TxCtx x) {
        try {
            if (x.key == null) {
                x.key = c.ch.register(selector, SelectionKey.OP_WRITE, q);
            } else {
                x.key.interestOps(SelectionKey.OP_WRITE);
            }
            armed.add(q);
        } catch (IOException | CancelledKeyException e) {
            LOG.debug("siw: qp {} lost its stream while waiting for write space", q.hw.qpNum(), e);
            c.lost("send failed: " + e.getMessage(), q.terminate == null); // a pending TERMINATE: the QP's drop
        }
    }

    /** The streams that can take more: their engines resume ({@code siw_sq_resume}). */
    private void writable() {
        Set<SelectionKey> keys = selector.selectedKeys();
        for (Iterator<SelectionKey> it = keys.iterator(); it.hasNext(); ) {
            SelectionKey k = it.next();
            it.remove();
            SiwQp q = (SiwQp) k.attachment();
            armed.remove(q);
            if (k.isValid()) {
                k.interestOps(0);
                kick(q);
            }
        }
        armed.removeIf(q -> q.tx.key == null || !q.tx.key.isValid());
    }

    private void fail(SiwQp q, Cep c, TxCtx x) {
        Exception e = x.failure;
        x.failure = null;
        if (e instanceof IOException) {
            LOG.debug("siw: qp {} lost its stream while sending", q.hw.qpNum(), e);
            c.lost("send failed: " + e.getMessage(), q.terminate == null); // a pending TERMINATE: the QP's drop
        } else if (e != null) {
            LOG.error("siw: qp {} failed in its transmit engine", q.hw.qpNum(), e);
            q.hw.raiseEvent(EventType.QP_FATAL);
            c.lost("TX failure: " + e, false);
        }
    }

    /**
     * Runs {@code q}'s engine on this thread unless another thread runs it ({@code tx_ctx.in_use}); whoever holds
     * it runs once more when work came while it ran.
     */
    private Outcome drive(SiwQp q, Cep c, TxCtx x) {
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
                if (m.response != null) {
                    // its IRD slot frees now, before TCP has the last byte: once the requester has it, it may
                    // send the next request, which must find the slot free, however late this thread runs again
                    q.inboundReads.decrementAndGet();
                } else {
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
}
