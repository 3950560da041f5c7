package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwCmHandler;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwConnRequest;
import dev.dmaplane.rdma.spi.IwConnection;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.net.BindException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.NoRouteToHostException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A connection endpoint ({@code struct siw_cep}, {@code siw_cm.c}): one TCP connection, its MPA start-up (request,
 * reply, reject) and its receive thread, which then reads the stream's FPDUs ({@link Rx}). The active side's thread
 * connects and sends the MPA request; the passive side's reads the request, reports it as CONNECT_REQUEST and waits
 * for {@link #accept} or {@link #reject}. A lost stream moves the QP to ERR (flushing it) and reports DISCONNECT (the
 * peer closed the stream) and CLOSE, once; a TERMINATE from the peer, or one this side sent, ends it with CLOSE
 * alone.
 *
 * <p>MPA v2 (RFC 6581) as {@code siw_connect}, {@code siw_proc_mpareq}, {@code siw_accept} and
 * {@code siw_proc_mpareply} speak it: a device at revision 2 sends its IRD and ORD in the request; the responder
 * answers a revision 2 request in revision 2 with the depths it will use (its ORD at most the initiator's IRD, its
 * IRD raised to at least the initiator's ORD: {@code relaxed_ird_negotiation}), and a revision 1 request in revision
 * 1. The initiator takes the responder's IRD as its ORD and the responder's ORD as its IRD. The events carry the
 * depths as {@code siw_cm_upcall} signals them: CONNECT_REPLY and ESTABLISHED this side's own ORD and IRD,
 * CONNECT_REQUEST the initiator's. A responder that speaks only revision 1 rejects a revision 2 request with a
 * revision 1 reply; the initiator then connects again in revision 1 (as {@code iw_cxgb4}'s
 * {@code retry_with_mpa_v1}). With {@code peer_to_peer} the initiator asks for an RTR message; the responder picks a
 * zero-length RDMA WRITE (or READ, if only that is offered), reports ESTABLISHED and sends only once it arrived
 * ({@code siw_qp_mpa_rts}, {@code siw_rtr_data_ready}).
 *
 * <p>Each side's wait for the peer's MPA frame is bounded by its MPA timer ({@link MpaTimer}, {@link MpaTimers}):
 * a responder that gets no request is released, an initiator that gets no reply reports CONNECT_REPLY with
 * {@code ETIMEDOUT}.
 *
 * <p>The endpoint's states are classes of their own where siw's are: the active side's MPA exchange (its request,
 * the reply's checks and refusals, the fallback to revision 1 and the report of a failed connect) is
 * {@link AwaitMpaRep}'s, the passive side's wait for the request {@link AwaitMpaReq}'s and its wait for the answer
 * {@link RecvdMpaReq}'s. Accept, reject, the events and the stream's end stay here: they share the endpoint's
 * depths and state.
 */
final class Cep implements IwConnection, IwConnRequest {
    private static final Logger LOG = LoggerFactory.getLogger(Cep.class);
    private static final Duration JOIN = Duration.ofSeconds(10);

    final SiwProvider dev;
    /** The stream; the active side opens a second one when it falls back to MPA revision 1. */
    volatile SocketChannel ch;
    final boolean active;
    private volatile InetSocketAddress local;
    private volatile InetSocketAddress remote;
    volatile SiwQp qp;
    volatile IwCmHandler handler;
    /** Outbound READs this side may have in flight (the negotiated ORD, at least one). */
    volatile int ord = 1;
    /** The depths MPA negotiated: READs this side may have outstanding, READs it serves at once. */
    volatile int negotiatedOrd;
    volatile int negotiatedIrd;
    /**
     * siw's {@code cep->ord} and {@code cep->ird} of the passive side, which {@code siw_cm_upcall} signals: the
     * peer's IRD and ORD from its request (0 under MPA v1) until accept makes them its own. The active side's are its
     * {@link AwaitMpaRep}'s.
     */
    private volatile int cepOrd;
    private volatile int cepIrd;
    /** The passive side's MPA request, once read. */
    private volatile Mpa.Frame request;
    /** The passive side waits for the peer's RTR message: nothing leaves and ESTABLISHED waits until it came. */
    private volatile boolean rtrPending;
    /** The active side's MPA exchange and how its failed connect is reported; null on the passive side. */
    private final AwaitMpaRep mpaRep;
    /** The passive side's wait for the MPA request; null on the active side. */
    private final AwaitMpaReq mpaReq;
    /** The passive side's request waiting for the consumer's answer. */
    private final RecvdMpaReq answer = new RecvdMpaReq(this);
    private final AtomicBoolean gone = new AtomicBoolean();
    /** Bytes the initiator sent before the reply, for the receive path; null when none were read. */
    volatile ByteBuffer early;
    /** The QP's modify took the stream over to drop it ({@link #disassociate}): the receive thread reports no end. */
    private volatile boolean disassociated;
    /** The end was reported with only our half closed ({@link #dropAfterTerminate}): the next end closes the socket. */
    private volatile boolean halfClosed;
    /** Whether the MPA exchange completed and the QP is in RTS on this connection. */
    private volatile boolean established;
    private Thread thread;
    /**
     * The MPA timer ({@code cep->mpa_timer}): the responder's from TCP's accept until the request is in, the
     * initiator's from its request until the reply is in; cancelled when the endpoint ends.
     */
    private volatile MpaTimer mpaTimer = MpaTimer.NONE;
    /** The receive thread's selector once it took over the stream ({@link Rx}), woken when the stream is closed. */
    volatile Selector rxSelector;

    // the capture's view of the stream: bytes this side sent and received (TCP sequence numbers follow them)
    volatile long sent;
    volatile long received;

    private Cep(SiwProvider dev, SocketChannel ch, boolean active, InetSocketAddress remote, IwConnParam param) {
        this.dev = dev;
        this.ch = ch;
        this.active = active;
        this.remote = remote;
        this.mpaRep = active ? new AwaitMpaRep(this, param) : null;
        this.mpaReq = active ? null : new AwaitMpaReq(this);
    }

    /** The active side of QP {@code q} towards {@code remote}; {@link #start()} connects. */
    static Cep connecting(SiwProvider dev, SiwQp q, InetSocketAddress remote, IwConnParam param,
                          IwCmHandler handler) throws IOException {
        Cep c = new Cep(dev, SocketChannel.open(), true, remote, param);
        c.qp = q;
        c.handler = handler;
        return c;
    }

    /** The passive side of a connection a listener accepted; the listener's handler gets its request. */
    static Cep accepted(SiwProvider dev, SocketChannel ch, IwCmHandler listenHandler) throws IOException {
        Cep c = new Cep(dev, ch, false, (InetSocketAddress) ch.getRemoteAddress(), null);
        c.local = (InetSocketAddress) ch.getLocalAddress();
        c.handler = listenHandler;
        return c;
    }

    /**
     * Starts the endpoint's thread (connect or wait for the request, then receive); an endpoint that ended before
     * gets none and leaves the device's list here, as the thread would when it ends.
     */
    synchronized void start() {
        if (gone.get()) {
            dev.cm.forget(this);
            return;
        }
        if (!active) {
            mpaReq.armTimer();
        }
        thread = Thread.ofPlatform().name("siw-rx-" + dev.name() + "-" + (active ? "a" : "p") + dev.cm.nextCepId())
                .daemon().start(this::run);
    }

    @Override
    public int qpn() {
        SiwQp q = qp;
        return q == null ? 0 : q.hw.qpNum();
    }

    @Override
    public InetSocketAddress local() {
        return local;
    }

    @Override
    public InetSocketAddress remote() {
        return remote;
    }

    /**
     * The endpoint's thread. It leaves the device's list only when it ends, not when the connection does: the
     * events of the end still run on it, and device removal waits for every thread on the list.
     */
    private void run() {
        try {
            runConnection();
        } finally {
            dev.cm.forget(this);
        }
    }

    private void runConnection() {
        try {
            if (active) {
                if (!mpaRep.run()) {
                    return;
                }
            } else if (!waitForAnswer()) {
                return;
            }
            new Rx(this).loop();
            lost("the peer closed the stream", true);
        } catch (ClosedChannelException e) {
            lost("closed locally", false);
        } catch (IOException e) {
            LOG.debug("siw: connection {} -> {} failed", local, remote, e);
            if (active && !established) {
                mpaRep.streamBroke();
            }
            lost(String.valueOf(e.getMessage()), true);
        } catch (RuntimeException e) {
            LOG.error("siw: connection {} -> {} failed unexpectedly", local, remote, e);
            lost(e.toString(), false);
        }
    }

    /**
     * {@code siw_connect}'s {@code kernel_bindconnect}: binds to the device's address and connects, blocking ("for
     * simplification, connect() is called in blocking mode"), so that a refused connection is the caller's error.
     */
    void bindConnect() throws IOException {
        ch.bind(new InetSocketAddress(dev.address(), 0));
        ch.connect(remote);
        local = (InetSocketAddress) ch.getLocalAddress();
        dev.captureHandshake(this);
    }

    /** The errno {@code kernel_bindconnect} would give for {@code e}. */
    static Errno connectErrno(IOException e) {
        String m = String.valueOf(e.getMessage());
        return switch (e) {
            case NoRouteToHostException x -> Errno.EHOSTUNREACH;
            case BindException x -> m.contains("in use") ? Errno.EADDRINUSE : Errno.EADDRNOTAVAIL;
            case ConnectException x -> m.contains("timed out") ? Errno.ETIMEDOUT : Errno.ECONNREFUSED;
            default -> Errno.EIO;
        };
    }

    /**
     * Passive: the MPA request ({@link AwaitMpaReq}), CONNECT_REQUEST with the peer's ORD and IRD (limited to the
     * device's; siw keeps them as its own IRD and ORD to be, and {@code siw_cm_upcall} signals them crossed back),
     * then the consumer's answer ({@code siw_proc_mpareq}, {@link RecvdMpaReq}).
     */
    private boolean waitForAnswer() throws IOException {
        Mpa.Frame req = mpaReq.read();
        if (req == null) {
            return false;
        }
        if (req.enhanced()) {
            Mpa.V2 v = req.v2();
            cepOrd = Math.min(v.ird(), dev.maxReadDepth());
            cepIrd = Math.min(v.ord(), dev.maxReadDepth());
        }
        request = req;
        event(IwCmEvent.Type.CONNECT_REQUEST, null, req.privateData(), this, cepIrd, cepOrd);
        if (!answer.await()) {
            lost("rejected", false); // nothing more when the endpoint ended already
            return false;
        }
        return !gone.get();
    }

    /**
     * {@code siw_cm_queue_work(cep, SIW_CM_WORK_MPATIMEOUT)}: {@code t} is the endpoint's timer; one that ended
     * meanwhile cancels it at once ({@link #lost} cancels the timer it finds after marking the endpoint gone).
     */
    void arm(MpaTimer t) {
        mpaTimer = t;
        if (gone.get()) {
            t.cancel();
        }
    }

    /**
     * {@code siw_accept}, {@code relaxed_ird_negotiation}: under MPA v2 the ORD at most the peer's IRD, the IRD at
     * least its ORD (within the device's), as the reply says. A QP that does not exist is EINVAL first, the request
     * left to answer; then depths above the device's, private data beyond the reply's room or a QP past RTR or
     * connected are EINVAL through its error path: the socket released (the initiator sees it end), nothing reported.
     */
    @Override
    public synchronized IwConnection accept(int qpn, IwConnParam p, IwCmHandler h) {
        ErrnoException.requireNonNull(p, "siw: accept parameters");
        ErrnoException.requireNonNull(h, "siw: accept handler");
        if (!active) {
            answer.checkPeerStillThere("accept");
        }
        if (active || answer.isAnswered()) {
            throw new ErrnoException(Errno.EINVAL, "siw: the request from " + remote + " was answered already");
        }
        if (dev.qp(qpn) == null) {
            throw new ErrnoException(Errno.EINVAL, "siw: accept of " + remote + ": no qp " + qpn + " on " + dev.name());
        }
        Mpa.Frame req = request;
        byte[] pd = p.privateData();
        int max = dev.maxReadDepth();
        if (p.ord() > max || p.ird() > max) {
            throw refuseAccept("ord " + p.ord() + ", ird " + p.ird() + ": the device's max_ord and max_ird are " + max);
        }
        if (req.enhanced() && pd.length > Mpa.MAX_PRIVATE_DATA - Mpa.V2_DATA) {
            throw refuseAccept("private data of " + pd.length + " bytes exceeds "
                    + (Mpa.MAX_PRIVATE_DATA - Mpa.V2_DATA) + " under MPA v2");
        }
        int myOrd = p.ord();
        int myIrd = p.ird();
        Mpa.V2 mine = null;
        if (req.enhanced()) {
            // relaxed_ird_negotiation: an ORD above the initiator's IRD is cut to it, an IRD below the initiator's
            // ORD is raised to it (that ORD is within the device's IRD, the request's words being limited to it)
            myOrd = Math.min(myOrd, cepOrd);
            myIrd = Math.max(myIrd, cepIrd);
            mine = req.v2().answer(myIrd, myOrd);
        }
        SiwQp q;
        try {
            q = dev.cm.bindQp(qpn, this);
        } catch (ErrnoException e) {
            throw refuseAccept(e.getMessage()); // past RTR or connected: siw_accept's state check, its error path
        }
        // set once the QP is bound, so that a refused accept leaves the request's depths as they came
        cepOrd = myOrd;
        cepIrd = myIrd;
        handler = h;
        negotiatedOrd = myOrd;
        negotiatedIrd = myIrd;
        ord = Math.max(1, myOrd);
        rtrPending = mine != null && mine.rtr() != 0;
        try {
            write(Mpa.frame(true, false, req.revision(), mine, pd));
            // siw_accept moves the QP to RTS with the reply; the peer's first FPDU is read only once this answer
            // is in (the endpoint's thread waits for it), so it finds the QP in RTS, and nothing of ours leaves
            // before the reply: the TX thread sends only on an established connection
            q.readqInit(myIrd, myOrd); // siw_accept: irq_size = cep->ird, orq_size = cep->ord
            q.hw.establish();
        } catch (IOException | RuntimeException e) {
            answer.answered(false);
            dev.cm.unbindQp(q, this);
            throw new ErrnoException(e instanceof ErrnoException x ? x.errno() : Errno.ECONNRESET,
                    "siw: accept of " + remote + " failed: " + e.getMessage(), e);
        }
        established = true;
        if (!rtrPending) {
            dev.tx.kick(q); // always, for a post between establish() and established = true (see AwaitMpaRep.run)
            event(IwCmEvent.Type.ESTABLISHED, null, new byte[0], null, cepOrd, cepIrd);
        }
        // only now the endpoint's thread reads the stream: siw_accept makes its ESTABLISHED upcall holding the
        // endpoint (siw_cep_set_inuse), so the work of a peer's close (siw_cm_work_handler) comes after it
        answer.answered(true);
        return this;
    }

    /**
     * {@code siw_accept}'s {@code error:} for parameters it refuses: the socket released and the endpoint closed (the
     * request is answered; the initiator's connect ends with ECONNRESET), the QP never bound.
     */
    private ErrnoException refuseAccept(String why) {
        lost("accept refused: " + why, false);
        return new ErrnoException(Errno.EINVAL, "siw: accept of " + remote + " refused: " + why);
    }

    /** Whether the passive side still waits for the peer's RTR message. */
    boolean awaitingRtr() {
        return rtrPending;
    }

    /**
     * {@code siw_rtr_data_ready}: the peer's first FPDU, its RTR message, was processed: this side may send, and
     * the connection is reported ESTABLISHED.
     */
    void rtrArrived() {
        rtrPending = false;
        SiwQp q = qp;
        if (q != null) {
            dev.tx.kick(q);
        }
        event(IwCmEvent.Type.ESTABLISHED, null, new byte[0], null, cepOrd, cepIrd);
    }

    @Override
    public synchronized void reject(byte[] privateData) {
        byte[] pd = privateData == null ? new byte[0] : privateData;
        if (!active) {
            answer.checkPeerStillThere("reject");
        }
        if (active || answer.isAnswered()) {
            throw new ErrnoException(Errno.EINVAL, "siw: the request from " + remote + " was answered already");
        }
        Mpa.Frame req = request;
        int limit = req.enhanced() ? Mpa.MAX_PRIVATE_DATA - Mpa.V2_DATA : Mpa.MAX_PRIVATE_DATA;
        if (pd.length > limit) {
            throw new ErrnoException(Errno.EINVAL, "siw: reject private data of " + pd.length + " bytes exceeds "
                    + limit);
        }
        // siw_reject: the request's header as the reply; under MPA v2 the words siw_proc_mpareq prepared (v2_ctrl)
        Mpa.V2 v2 = req.enhanced() ? req.v2().answer(cepIrd, cepOrd) : null;
        try {
            write(Mpa.frame(true, true, req.revision(), v2, pd));
        } catch (IOException e) {
            LOG.debug("siw: the reject to {} was not delivered", remote, e);
        }
        answer.answered(false);
    }

    @Override
    public void disconnect() {
        lost("disconnected locally", false);
    }

    /** Writes an MPA start-up frame (the TX thread does not use the stream yet). */
    void write(byte[] frame) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(frame);
        dev.captureData(this, b, 0, frame.length);
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    /** A connect refused before it started (its caller got the errno): closed without an event. */
    void abandon(String why) {
        mpaRep.abandoned();
        lost(why, false);
    }

    /**
     * {@code rx_suspend} and {@code siw_socket_disassoc} as {@code siw_qp_cm_drop} does them: the QP drops the
     * stream itself, reporting CLOSE only, after a modify to CLOSING or TERMINATE ({@link SiwQp#dropConnection}) or
     * an error its receive or transmit path found ({@link Rx}, {@link Tx}); the receive thread reads nothing more,
     * and the peer's end of the stream, which it may see first, is no longer reported.
     */
    void disassociate() {
        disassociated = true;
    }

    /**
     * The QP sent its TERMINATE and drops the connection ({@code siw_qp_cm_drop}): CLOSE alone, the QP off the
     * connection, and our half of the stream closed behind the TERMINATE. siw releases the socket at once; here the
     * socket closes once the peer ended its half (the receive thread drains until then) or the device goes, so that
     * what the peer still sends meanwhile is read and dropped rather than answered with a reset, which would discard
     * the TERMINATE if TCP had not yet sent it.
     */
    void dropAfterTerminate(String why) {
        halfClosed = true;
        lost(why, false);
    }

    /** Whether the QP's modify took the stream over to drop it: the receive path reads nothing more on it. */
    boolean isDisassociated() {
        return disassociated;
    }

    /**
     * The stream is over: closed, the QP in ERR (its outstanding work flushed), DISCONNECT when the peer ended it,
     * then CLOSE. Idempotent; the peer's end of a disassociated stream is left to the QP's drop.
     */
    void lost(String why, boolean byPeer) {
        if (gone.get() && halfClosed) {
            LOG.debug("siw: connection {} -> {} closes: {}", local, remote, why);
            closeStream();
            return;
        }
        if (byPeer && disassociated) {
            LOG.debug("siw: connection {} -> {} ends under its QP's drop: {}", local, remote, why);
            return;
        }
        if (!gone.compareAndSet(false, true)) {
            return;
        }
        LOG.debug("siw: connection {} -> {} ends: {}", local, remote, why);
        mpaTimer.cancel(); // the release's siw_cancel_mpatimer
        answer.ended();
        dev.captureFin(this);
        if (halfClosed) {
            try {
                ch.shutdownOutput();
            } catch (IOException e) {
                LOG.debug("siw: the stream {} -> {} is gone already", local, remote, e);
                closeStream();
            }
        } else {
            closeStream();
        }
        SiwQp q = qp;
        boolean was = established;
        if (q != null) {
            if (was) {
                q.connectionGone(this);
            } else {
                dev.cm.unbindQp(q, this); // a failed connect frees the QP: in ERR when rejected or refused
                if (active && mpaRep.leavesQpInError() && !q.destroyed) {
                    q.hw.enterError(); // before CONNECT_REPLY: a query after the event sees ERR
                }
            }
        }
        if (!was && active) {
            mpaRep.ended(); // after the unbind and ERR: a query from the handler sees them
        }
        if (was) {
            if (byPeer) { // siw_cm_work_handler's PEER_CLOSE in RDMA mode: DISCONNECT with status 0, then CLOSE
                event(IwCmEvent.Type.DISCONNECT, null, new byte[0], null, 0, 0);
            }
            event(IwCmEvent.Type.CLOSE, null, new byte[0], null, 0, 0);
        }
    }

    /**
     * Closes the socket; a non-blocking stream is closed for good once the selectors it is registered with let go of
     * it, so both are woken.
     */
    private void closeStream() {
        try {
            ch.close();
        } catch (IOException e) {
            LOG.error("siw: closing the socket {} -> {} failed", local, remote, e);
        }
        Selector s = rxSelector;
        if (s != null) {
            s.wakeup();
        }
        dev.tx.wake();
    }

    boolean isGone() {
        return gone.get();
    }

    /** The active side's MPA exchange completed with its QP in RTS ({@link AwaitMpaRep#run}). */
    void markEstablished() {
        established = true;
    }

    /** Whether the MPA exchange completed: only then may the TX thread use the stream. */
    boolean isEstablished() {
        return established && !rtrPending;
    }

    void event(IwCmEvent.Type type, Errno status, byte[] pd, IwConnRequest req, int eventOrd, int eventIrd) {
        IwCmHandler h = handler;
        if (h == null) {
            return;
        }
        try {
            h.event(new IwCmEvent(type, status, local, remote, pd, eventOrd, eventIrd, req));
        } catch (RuntimeException e) {
            LOG.error("siw: the handler of {} -> {} failed on {}", local, remote, type, e);
        }
    }

    /** Waits for the endpoint's thread (not from that thread). */
    void join() {
        Thread t;
        synchronized (this) {
            t = thread;
        }
        if (t == null || t == Thread.currentThread()) {
            return;
        }
        try {
            if (!t.join(JOIN)) {
                LOG.error("siw: the thread of {} -> {} did not end within {}", local, remote, JOIN);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
