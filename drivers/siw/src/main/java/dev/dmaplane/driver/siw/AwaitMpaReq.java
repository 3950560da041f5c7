package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.time.Duration;

/**
 * A passive endpoint waiting for the initiator's MPA request ({@code SIW_EPSTATE_AWAIT_MPAREQ} of {@code siw_cm.c}):
 * the MPA timer armed at TCP's accept ({@code siw_accept_newconn}), the request read ({@code siw_recv_mpa_rr}) and
 * checked ({@code siw_proc_mpareq}). A request this side cannot read, or whose key is wrong, releases the endpoint;
 * one it cannot take is rejected with a reply in the revision it speaks ({@code reject_conn}); neither is reported
 * to anybody. A request taken goes on to its {@link Cep} as CONNECT_REQUEST and waits in {@link RecvdMpaReq}.
 */
final class AwaitMpaReq {
    private static final Logger LOG = LoggerFactory.getLogger(AwaitMpaReq.class);

    private final Cep cep;
    /** The MPA timer armed at TCP's accept; the endpoint's thread, started after, reads it. */
    private MpaTimer timer = MpaTimer.NONE;

    AwaitMpaReq(Cep cep) {
        this.cep = cep;
    }

    /** Arms the MPA timer for the request (siw's {@code MPAREP_TIMEOUT}); before the endpoint's thread starts. */
    void armTimer() {
        Duration d = cep.dev.mpaTimers.awaitRequest();
        timer = cep.dev.mpaTimers.forRequest(() -> timedOut(d));
        cep.arm(timer);
    }

    /**
     * Reads and checks the request ({@code siw_recv_mpa_rr}, {@code siw_proc_mpareq}).
     *
     * @return the request this side takes; null when it was refused or rejected, or the timer fired first (the
     *         endpoint ended)
     */
    Mpa.Frame read() throws IOException {
        Mpa.Frame req;
        try {
            req = Mpa.read(cep.ch, false);
        } catch (ErrnoException e) {
            refuse(e);
            return null;
        }
        if (!timer.cancel()) {
            return null; // the request came as MPAREP_TIMEOUT fired, which closed the endpoint
        }
        try {
            req.checkKey();
        } catch (ErrnoException e) {
            refuse(e);
            return null;
        }
        cep.received += req.length();
        int rev = cep.dev.mpaRevision();
        try {
            Mpa.check(req, rev);
        } catch (ErrnoException e) {
            LOG.debug("siw: MPA request from {} rejected: {}", cep.remote(), e.getMessage());
            int answerRev = Math.max(Mpa.REVISION_1, Math.min(req.revision(), rev));
            try {
                cep.write(Mpa.frame(true, true, answerRev, null, new byte[0]));
            } catch (IOException x) {
                LOG.debug("siw: the reject to {} was not delivered", cep.remote(), x);
            }
            cep.lost(e.getMessage(), false);
            return null;
        }
        return req;
    }

    /** {@code siw_proc_mpareq}'s refusal of a request it cannot read or whose key is wrong: the endpoint released. */
    private void refuse(ErrnoException e) {
        LOG.debug("siw: MPA request from {} refused", cep.remote(), e);
        cep.lost(e.getMessage(), false);
    }

    /**
     * {@code siw_cm_work_handler}'s {@code SIW_CM_WORK_MPATIMEOUT} while the responder awaits the MPA request
     * ({@code SIW_EPSTATE_AWAIT_MPAREQ}): no request within {@code d} of TCP's accept. The endpoint is released, its
     * socket closed (the peer sees its stream end), and nobody is told: no iw_cm id knows the connection yet.
     */
    private void timedOut(Duration d) {
        cep.lost("no MPA request within " + d, false);
    }
}
