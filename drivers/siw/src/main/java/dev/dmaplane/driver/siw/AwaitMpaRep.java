package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

/**
 * An active endpoint's MPA exchange ({@code SIW_EPSTATE_AWAIT_MPAREP} of {@code siw_cm.c}): the request
 * {@code siw_connect} sends, the reply {@code siw_proc_mpareply} reads and checks (each of its refusals, and the
 * second connect in revision 1 after a revision 1 reject), and how a connect that did not complete is reported:
 * CONNECT_REPLY once, with its status and the peer's private data, after the release moved the QP to ERR where
 * siw's does. The endpoint's thread runs the exchange ({@link #run}); its {@link Cep} owns the stream and its end
 * ({@link Cep#lost}), which asks here what to report.
 */
final class AwaitMpaRep {
    private static final Logger LOG = LoggerFactory.getLogger(AwaitMpaRep.class);

    private final Cep cep;
    private final IwConnParam param;
    /**
     * siw's {@code cep->ord} and {@code cep->ird} of the active side, which {@code siw_cm_upcall} signals in
     * CONNECT_REPLY: from connect until the reply's (negotiated, or as the peer sent them when the negotiation fails).
     */
    private volatile int cepOrd;
    private volatile int cepIrd;
    /** Whether CONNECT_REPLY was reported. */
    private volatile boolean replied;
    /** How a failed connect is reported (ECONNRESET when the stream just broke), and the peer's private data. */
    private volatile Errno failure = Errno.ECONNRESET;
    private volatile byte[] failurePd = new byte[0];
    /** Whether the failed connect leaves the QP in ERR (it sent a TERMINATE) rather than as it was. */
    private volatile boolean toError;

    AwaitMpaRep(Cep cep, IwConnParam param) {
        this.cep = cep;
        this.param = param;
    }

    /**
     * TCP connect, MPA request, MPA reply ({@code siw_connect}, {@code siw_proc_mpareply}); once more in revision 1
     * when a revision 2 request was rejected by a responder that speaks only revision 1.
     *
     * @return whether the connection is established; false when the connect failed (reported here or by the
     *         endpoint's end)
     */
    boolean run() throws IOException {
        SiwProvider dev = cep.dev;
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
            cep.write(Mpa.frame(false, false, rev, mine, param.privateData()));
            Duration d = dev.mpaTimers.awaitReply();
            MpaTimer timer = dev.mpaTimers.forReply(() -> timedOut(d));
            cep.arm(timer);
            try {
                rep = Mpa.read(cep.ch, true);
            } catch (ErrnoException e) {
                if (timer.cancel()) {
                    refuse(Errno.EINVAL, null, e.getMessage()); // siw_recv_mpa_rr failed: out_err
                }
                return false;
            }
            if (!timer.cancel()) {
                return false; // siw_proc_mpareply cancels the timer once the reply is in: here the timeout came first
            }
            cep.received += rep.length();
            if (rep.revision() > Mpa.REVISION_2) {
                refuse(Errno.EINVAL, null, "MPA revision " + rep.revision() + " above " + Mpa.REVISION_2);
                return false;
            }
            if (!rep.keyMatches()) {
                refuse(Errno.EINVAL, new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA,
                        Terminate.LLP_INVALID_REQ_RESP), "MPA key '" + new String(rep.key(), StandardCharsets.US_ASCII)
                        + "' is not the reply's");
                return false;
            }
            if (!rep.rejected() || rep.revision() >= rev || rep.revision() < Mpa.REVISION_1) {
                break;
            }
            LOG.debug("siw: {} answers MPA revision {} only: connecting again in it", cep.remote(), rep.revision());
            if (!reopen()) {
                return false;
            }
            rev = rep.revision();
            p2p = false;
        }
        if (rep.rejected()) {
            // siw_proc_mpareply: "got mpa reject", CONNECT_REPLY -ECONNRESET; the release moves the QP to ERR
            toError = true;
            fail(Errno.ECONNRESET, rep.privateData(), "rejected by the peer");
            return false;
        }
        if ((rep.flags() & Mpa.FLAG_MARKERS) != 0) {
            refuse(Errno.ECONNREFUSED, null, "MPA markers asked for (flags 0x" + Integer.toHexString(rep.flags())
                    + "): siw supports none");
            return false;
        }
        int rtr = 0;
        if (rev == Mpa.REVISION_2) {
            if (!rep.enhanced()) {
                // "the responder MUST reply with MPA version 2 and MUST set MPA_RR_FLAG_ENHANCED": -ECONNRESET, and
                // the non-zero return releases the endpoint, which moves the QP to ERR
                toError = true;
                fail(Errno.ECONNRESET, new byte[0], "MPA v2 reply without IRD/ORD (revision "
                        + rep.revision() + ", flags 0x" + Integer.toHexString(rep.flags()) + ")");
                return false;
            }
            if (rep.data().length < Mpa.V2_DATA) {
                // siw_proc_mpareply reads struct mpa_v2_data without a length check, past what the reply held (or from
                // no buffer at all); refused here as the function refuses a reply it cannot read: out_err
                refuse(Errno.EINVAL, null, "MPA v2 reply with " + rep.data().length
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
                refuse(Errno.EINVAL, new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA,
                        Terminate.LLP_INSUFFICIENT_IRD),
                        "the peer's ORD " + theirs.ord() + " exceeds the IRD of at most " + max);
                return false;
            }
            if (p2p) {
                int offered = Mpa.V2_WRITE_RTR;
                if ((theirs.rtr() & offered) == 0) {
                    refuse(Errno.EINVAL, new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA,
                            Terminate.LLP_NO_MATCHING_RTR),
                            "no matching RTR message: offered 0x" + Integer.toHexString(offered) + ", picked 0x"
                                    + Integer.toHexString(theirs.rtr()));
                    return false;
                }
                rtr = Mpa.V2_WRITE_RTR;
            }
        }
        cep.negotiatedOrd = cepOrd;
        cep.negotiatedIrd = cepIrd;
        cep.ord = Math.max(1, cep.negotiatedOrd);
        if (rtr != 0) {
            cep.write(Iwarp.rtrWrite()); // the first FPDU of the stream: the TX thread sends only once established
        }
        SiwQp qp = cep.qp;
        // siw_proc_mpareply: irq_size = cep->ird, orq_size = cep->ord
        qp.readqInit(cep.negotiatedIrd, cep.negotiatedOrd);
        qp.hw.establish();
        cep.markEstablished();
        // always: a post between establish() (the QP in RTS) and the line above found the connection not yet
        // established and left the TX thread alone (siw_qp_modify sets the socket and RTS under one state_lock)
        dev.tx.kick(qp);
        reply(null, rep.privateData());
        return true;
    }

    /**
     * Closes the rejected stream and connects a new one; false when the endpoint was closed meanwhile or the new
     * connection failed (CONNECT_REPLY reported).
     */
    private boolean reopen() throws IOException {
        cep.dev.captureFin(cep);
        cep.ch.close();
        cep.sent = 0;
        cep.received = 0;
        cep.ch = SocketChannel.open();
        if (cep.isGone()) {
            cep.ch.close(); // lost() closed the old stream: the new one must not stay open
            return false;
        }
        try {
            cep.bindConnect();
        } catch (ClosedChannelException e) {
            throw e;
        } catch (IOException e) {
            fail(Cep.connectErrno(e), new byte[0], "connect failed: " + e.getMessage());
            return false;
        }
        return true;
    }

    /**
     * {@code siw_cm_work_handler}'s {@code SIW_CM_WORK_MPATIMEOUT} while the initiator awaits the MPA reply
     * ({@code SIW_EPSTATE_AWAIT_MPAREP}): no complete reply within {@code d} of the request. Any private data read so
     * far is hidden, CONNECT_REPLY reports {@code -ETIMEDOUT}, and the release moves the QP to ERR
     * ({@code siw_qp_llp_close}) and closes the socket (the peer sees its stream end).
     */
    private void timedOut(Duration d) {
        toError = true;
        fail(Errno.ETIMEDOUT, new byte[0], "no MPA reply within " + d);
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
    private void refuse(Errno status, Terminate t, String why) {
        LOG.debug("siw: {} refused the MPA reply of {}: {}", cep.local(), cep.remote(), why);
        if (t != null) {
            try {
                cep.write(t.fpdu());
                cep.dev.terminateSent(t);
            } catch (IOException e) {
                LOG.debug("siw: the TERMINATE to {} was not delivered", cep.remote(), e); // best effort, as siw's
            }
        }
        toError = true;
        fail(status, new byte[0], t == null ? why : why + ": " + t);
    }

    /**
     * The attempt failed: the QP is unbound (it may connect again) before CONNECT_REPLY tells the caller so, with
     * {@code status} and the peer's private data.
     */
    private void fail(Errno status, byte[] pd, String why) {
        failure = status;
        failurePd = pd;
        cep.lost(why, false);
    }

    /**
     * The stream broke before the exchange completed ({@code siw_cm_work_handler}'s PEER_CLOSE while
     * AWAIT_MPAREP): CONNECT_REPLY {@code -ECONNRESET}, then the release moves the QP to ERR
     * ({@code siw_qp_llp_close}).
     */
    void streamBroke() {
        toError = true;
    }

    /** A connect refused before it started (its caller got the errno): no CONNECT_REPLY. */
    void abandoned() {
        replied = true;
    }

    /** Whether the failed connect leaves the QP in ERR rather than as it was. */
    boolean leavesQpInError() {
        return toError;
    }

    /** The endpoint ended before the connection was established: CONNECT_REPLY with the failure, unless reported. */
    void ended() {
        if (!replied) {
            reply(failure, failurePd);
        }
    }

    private void reply(Errno status, byte[] pd) {
        replied = true;
        cep.event(IwCmEvent.Type.CONNECT_REPLY, status, pd, null, cepOrd, cepIrd);
    }
}
