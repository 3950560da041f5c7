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
import java.nio.charset.StandardCharsets;
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
 * <p>About 780 lines: like {@code siw_cm.c}'s endpoint, the start-up of both sides (request, reply and each refusal
 * of {@code siw_proc_mpareply}) and the stream's end share the endpoint's state; a class apart would pass it all.
 * The passive side's wait for the answer is {@link RecvdMpaReq}'s. The MPA reply's refusals are the part to move
 * out next, with that state as a record of their own.
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
     * siw's {@code cep->ord} and {@code cep->ird}, which {@code siw_cm_upcall} signals: the active side's from connect
     * until the reply's (negotiated, or as the peer sent them when the negotiation fails); the passive side's the
     * peer's IRD and ORD from its request (0 under MPA v1) until accept makes them its own.
     */
    private volatile int cepOrd;
    private volatile int cepIrd;
    /** The passive side's MPA request, once read. */
    private volatile Mpa.Frame request;
    /** The passive side waits for the peer's RTR message: nothing leaves and ESTABLISHED waits until it came. */
    private volatile boolean rtrPending;
    private final IwConnParam param;
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
    /** Whether the active side's CONNECT_REPLY was reported. */
    private volatile boolean replied;
    /** How a failed connect is reported (ECONNRESET when the stream just broke), and the peer's private data. */
    private volatile Errno failure = Errno.ECONNRESET;
    private volatile byte[] failurePd = new byte[0];
    /** Whether the failed connect leaves the QP in ERR (it sent a TERMINATE) rather than as it was. */
    private volatile boolean toError;
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
        this.param = param;
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
            dev.forget(this);
            return;
        }
        if (!active) {
            Duration d = dev.mpaTimers.awaitRequest();
            arm(dev.mpaTimers.forRequest(() -> requestTimedOut(d)));
        }
        thread = Thread.ofPlatform().name("siw-rx-" + dev.name() + "-" + (active ? "a" : "p") + dev.nextCepId())
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
            dev.forget(this);
        }
    }

    private void runConnection() {
        try {
            if (active) {
                if (!connectActive()) {
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
                // siw_cm_work_handler's PEER_CLOSE while AWAIT_MPAREP: CONNECT_REPLY -ECONNRESET, then the release
                // moves the QP to ERR (siw_qp_llp_close)
                toError = true;
            }
            lost(String.valueOf(e.getMessage()), true);
        } catch (RuntimeException e) {
            LOG.error("siw: connection {} -> {} failed unexpectedly", local, remote, e);
            lost(e.toString(), false);
        }
    }

    /**
     * TCP connect, MPA request, MPA reply ({@code siw_connect}, {@code siw_proc_mpareply}); once more in revision 1
     * when a revision 2 request was rejected by a responder that speaks only revision 1.
     */
    private boolean connectActive() throws IOException {
        int rev = dev.mpaRevision();
        boolean p2p = dev.peerToPeer();
        int max = dev.maxReadDepth();
        // siw_connect refused depths above the device's (ENOMEM); a peer-to-peer initiator asks for at least one READ
        int myOrd = p2p && param.ord() == 0 ? 1 : param.ord();
        int myIrd = param.ird();
        cepOrd = myOrd;
        cepIrd = myIrd;
        Mpa.Frame rep;
        while (true) {
            Mpa.V2 mine = rev == Mpa.REVISION_2 ? new Mpa.V2(myIrd, myOrd, p2p, p2p ? Mpa.V2_WRITE_RTR : 0) : null;
            write(Mpa.frame(false, false, rev, mine, param.privateData()));
            Duration d = dev.mpaTimers.awaitReply();
            arm(dev.mpaTimers.forReply(() -> replyTimedOut(d)));
            try {
                rep = Mpa.read(ch, true);
            } catch (ErrnoException e) {
                if (mpaTimer.cancel()) {
                    refuseReply(Errno.EINVAL, null, e.getMessage()); // siw_recv_mpa_rr failed: out_err
                }
                return false;
            }
            if (!mpaTimer.cancel()) {
                return false; // siw_proc_mpareply cancels the timer once the reply is in: here the timeout came first
            }
            received += rep.length();
            if (rep.revision() > Mpa.REVISION_2) {
                refuseReply(Errno.EINVAL, null, "MPA revision " + rep.revision() + " above " + Mpa.REVISION_2);
                return false;
            }
            if (!rep.keyMatches()) {
                refuseReply(Errno.EINVAL, new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA,
                        Terminate.LLP_INVALID_REQ_RESP), "MPA key '" + new String(rep.key(), StandardCharsets.US_ASCII)
                        + "' is not the reply's");
                return false;
            }
            if (!rep.rejected() || rep.revision() >= rev || rep.revision() < Mpa.REVISION_1) {
                break;
            }
            LOG.debug("siw: {} answers MPA revision {} only: connecting again in it", remote, rep.revision());
            if (!reopen()) {
                return false;
            }
            rev = rep.revision();
            p2p = false;
        }
        if (rep.rejected()) {
            // siw_proc_mpareply: "got mpa reject", CONNECT_REPLY -ECONNRESET; the release moves the QP to ERR
            toError = true;
            failConnect(Errno.ECONNRESET, rep.privateData(), "rejected by the peer");
            return false;
        }
        if ((rep.flags() & Mpa.FLAG_MARKERS) != 0) {
            refuseReply(Errno.ECONNREFUSED, null, "MPA markers asked for (flags 0x" + Integer.toHexString(rep.flags())
                    + "): siw supports none");
            return false;
        }
        int rtr = 0;
        if (rev == Mpa.REVISION_2) {
            if (!rep.enhanced()) {
                // "the responder MUST reply with MPA version 2 and MUST set MPA_RR_FLAG_ENHANCED": -ECONNRESET, and
                // the non-zero return releases the endpoint, which moves the QP to ERR
                toError = true;
                failConnect(Errno.ECONNRESET, new byte[0], "MPA v2 reply without IRD/ORD (revision "
                        + rep.revision() + ", flags 0x" + Integer.toHexString(rep.flags()) + ")");
                return false;
            }
            if (rep.data().length < Mpa.V2_DATA) {
                // siw_proc_mpareply reads struct mpa_v2_data without a length check, past what the reply held (or from
                // no buffer at all); refused here as the function refuses a reply it cannot read: out_err
                refuseReply(Errno.EINVAL, null, "MPA v2 reply with " + rep.data().length
                        + " bytes of private data: too few for IRD and ORD");
                return false;
            }
            Mpa.V2 theirs = rep.v2();
            // "always report negotiated peer values to user, even if IRD/ORD negotiation failed": this side's IRD is
            // the responder's ORD, its ORD the responder's IRD (which its relaxed negotiation raised to our ORD)
            cepIrd = theirs.ord();
            cepOrd = theirs.ird();
            if (theirs.ord() > max) {
                // relaxed_ird_negotiation: our IRD may grow up to the device's, not beyond
                refuseReply(Errno.EINVAL, new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA,
                        Terminate.LLP_INSUFFICIENT_IRD),
                        "the peer's ORD " + theirs.ord() + " exceeds the IRD of at most " + max);
                return false;
            }
            if (p2p) {
                int offered = Mpa.V2_WRITE_RTR;
                if ((theirs.rtr() & offered) == 0) {
                    refuseReply(Errno.EINVAL, new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA,
                            Terminate.LLP_NO_MATCHING_RTR),
                            "no matching RTR message: offered 0x" + Integer.toHexString(offered) + ", picked 0x"
                                    + Integer.toHexString(theirs.rtr()));
                    return false;
                }
                rtr = Mpa.V2_WRITE_RTR;
            }
        }
        negotiatedOrd = cepOrd;
        negotiatedIrd = cepIrd;
        ord = Math.max(1, negotiatedOrd);
        if (rtr != 0) {
            write(Iwarp.rtrWrite()); // the first FPDU of the stream: the TX thread sends only once established
        }
        qp.readqInit(negotiatedIrd, negotiatedOrd); // siw_proc_mpareply: irq_size = cep->ird, orq_size = cep->ord
        qp.hw.establish();
        established = true;
        // always: a post between establish() (the QP in RTS) and the line above found the connection not yet
        // established and left the TX thread alone (siw_qp_modify sets the socket and RTS under one state_lock)
        dev.tx.kick(qp);
        reply(null, rep.privateData());
        return true;
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
     * Closes the rejected stream and connects a new one; false when the endpoint was closed meanwhile or the new
     * connection failed (CONNECT_REPLY reported).
     */
    private boolean reopen() throws IOException {
        dev.captureFin(this);
        ch.close();
        sent = 0;
        received = 0;
        ch = SocketChannel.open();
        if (gone.get()) {
            ch.close(); // lost() closed the old stream: the new one must not stay open
            return false;
        }
        try {
            bindConnect();
        } catch (ClosedChannelException e) {
            throw e;
        } catch (IOException e) {
            failConnect(connectErrno(e), new byte[0], "connect failed: " + e.getMessage());
            return false;
        }
        return true;
    }

    /**
     * {@code siw_proc_mpareply} refusing a reply: with {@code t} (a wrong key, an insufficient IRD, no matching RTR)
     * a TERMINATE of the LLP layer ({@code siw_init_terminate}, {@code siw_send_terminate}) goes out as the stream's
     * only FPDU; without (a reply {@code siw_recv_mpa_rr} could not read, a revision above 2, markers) the stream is
     * just closed. CONNECT_REPLY reports {@code status} ({@code EINVAL} from {@code out_err}, {@code ECONNREFUSED}
     * for markers) and the QP ends in ERR, as the endpoint's release in {@code siw_cm_work_handler} moves it there
     * ({@code siw_qp_llp_close}). Linux sends a TERMINATE before its QP has the CRC enabled, with a CRC field of
     * zero; both sides set the C flag of RFC 5044 in their MPA frames, so the CRC here is the FPDU's real CRC32C,
     * as the peer's MPA layer and Wireshark check it.
     *
     * @param t the TERMINATE to send, or null for none
     */
    private void refuseReply(Errno status, Terminate t, String why) {
        LOG.debug("siw: {} refused the MPA reply of {}: {}", local, remote, why);
        if (t != null) {
            try {
                write(t.fpdu());
                dev.terminateSent(t);
            } catch (IOException e) {
                LOG.debug("siw: the TERMINATE to {} was not delivered", remote, e); // best effort, as siw's
            }
        }
        toError = true;
        failConnect(status, new byte[0], t == null ? why : why + ": " + t);
    }

    private void reply(Errno status, byte[] pd) {
        replied = true;
        event(IwCmEvent.Type.CONNECT_REPLY, status, pd, null, cepOrd, cepIrd);
    }

    /**
     * The active side's attempt failed: the QP is unbound (it may connect again) before CONNECT_REPLY tells the
     * caller so, with {@code status} and the peer's private data.
     */
    private void failConnect(Errno status, byte[] pd, String why) {
        failure = status;
        failurePd = pd;
        lost(why, false);
    }

    /**
     * Passive: the MPA request, CONNECT_REQUEST with the peer's ORD and IRD (limited to the device's; siw keeps them
     * as its own IRD and ORD to be, and {@code siw_cm_upcall} signals them crossed back), then the
     * consumer's answer ({@code siw_proc_mpareq}). A request this side cannot take is rejected with a reply in the
     * revision it speaks ({@code reject_conn}) and reported to nobody.
     */
    private boolean waitForAnswer() throws IOException {
        Mpa.Frame req;
        try {
            req = Mpa.read(ch, false);
        } catch (ErrnoException e) {
            refuseRequest(e);
            return false;
        }
        if (!mpaTimer.cancel()) {
            return false; // the request came as MPAREP_TIMEOUT fired, which closed the endpoint
        }
        try {
            req.checkKey();
        } catch (ErrnoException e) {
            refuseRequest(e);
            return false;
        }
        received += req.length();
        int rev = dev.mpaRevision();
        try {
            Mpa.check(req, rev);
        } catch (ErrnoException e) {
            LOG.debug("siw: MPA request from {} rejected: {}", remote, e.getMessage());
            int answerRev = Math.max(Mpa.REVISION_1, Math.min(req.revision(), rev));
            try {
                write(Mpa.frame(true, true, answerRev, null, new byte[0]));
            } catch (IOException x) {
                LOG.debug("siw: the reject to {} was not delivered", remote, x);
            }
            lost(e.getMessage(), false);
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
    private void arm(MpaTimer t) {
        mpaTimer = t;
        if (gone.get()) {
            t.cancel();
        }
    }

    /** {@code siw_proc_mpareq}'s refusal of a request it cannot read or whose key is wrong: the endpoint released. */
    private void refuseRequest(ErrnoException e) {
        LOG.debug("siw: MPA request from {} refused", remote, e);
        lost(e.getMessage(), false);
    }

    /**
     * {@code siw_cm_work_handler}'s {@code SIW_CM_WORK_MPATIMEOUT} while the responder awaits the MPA request
     * ({@code SIW_EPSTATE_AWAIT_MPAREQ}): no request within {@code d} of TCP's accept. The endpoint is released, its
     * socket closed (the peer sees its stream end), and nobody is told: no iw_cm id knows the connection yet.
     */
    private void requestTimedOut(Duration d) {
        lost("no MPA request within " + d, false);
    }

    /**
     * {@code siw_cm_work_handler}'s {@code SIW_CM_WORK_MPATIMEOUT} while the initiator awaits the MPA reply
     * ({@code SIW_EPSTATE_AWAIT_MPAREP}): no complete reply within {@code d} of the request. Any private data read so
     * far is hidden, CONNECT_REPLY reports {@code -ETIMEDOUT}, and the release moves the QP to ERR
     * ({@code siw_qp_llp_close}) and closes the socket (the peer sees its stream end).
     */
    private void replyTimedOut(Duration d) {
        toError = true;
        failConnect(Errno.ETIMEDOUT, new byte[0], "no MPA reply within " + d);
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
            q = dev.bindQp(qpn, this);
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
            dev.unbindQp(q, this);
            throw new ErrnoException(e instanceof ErrnoException x ? x.errno() : Errno.ECONNRESET,
                    "siw: accept of " + remote + " failed: " + e.getMessage(), e);
        }
        established = true;
        answer.answered(true);
        if (!rtrPending) {
            dev.tx.kick(q); // always, for a post between establish() and established = true (see connectActive)
            event(IwCmEvent.Type.ESTABLISHED, null, new byte[0], null, cepOrd, cepIrd);
        }
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
    private void write(byte[] frame) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(frame);
        dev.captureData(this, b, 0, frame.length);
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    /** A connect refused before it started (its caller got the errno): closed without an event. */
    void abandon(String why) {
        replied = true;
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
                dev.unbindQp(q, this); // a failed connect frees the QP: in ERR when rejected or refused
                if (toError && !q.destroyed) {
                    q.hw.enterError(); // before CONNECT_REPLY: a query after the event sees ERR
                }
            }
        }
        if (!was && active && !replied) {
            reply(failure, failurePd); // after the unbind and ERR: a query from the handler sees them
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

    /** Whether the MPA exchange completed: only then may the TX thread use the stream. */
    boolean isEstablished() {
        return established && !rtrPending;
    }

    private void event(IwCmEvent.Type type, Errno status, byte[] pd, IwConnRequest req, int eventOrd, int eventIrd) {
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
