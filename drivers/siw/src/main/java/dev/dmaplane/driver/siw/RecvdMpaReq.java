package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.util.concurrent.CompletableFuture;

/**
 * A passive endpoint's request waiting for the consumer's accept or reject ({@code SIW_EPSTATE_RECVD_MPAREQ} of
 * {@code siw_cm.c}): the answer once given, and the endpoint's thread watching the stream meanwhile, as siw's socket
 * callbacks watch it in that state. No MPA timer runs here: the request waits until it is answered or the initiator
 * goes. Its {@link Cep}'s monitor guards an answer against the stream's end ({@link Cep#accept}, {@link Cep#reject}
 * hold it).
 */
final class RecvdMpaReq {
    /** Bytes the initiator may send before the reply that are kept for the receive path. */
    private static final int EARLY_BYTES = 1 << 16;

    private final Cep cep;
    private final CompletableFuture<Boolean> answer = new CompletableFuture<>();
    /** The initiator closed its stream while the request waited for the answer. */
    private volatile boolean closedBeforeAnswer;
    /** Whether an accept or reject was told so (ECONNRESET once; then the request is answered). Under the monitor. */
    private boolean goneTold;

    RecvdMpaReq(Cep cep) {
        this.cep = cep;
    }

    /**
     * Waits for the consumer's answer watching the stream: a peer that closes or resets its stream meanwhile ends
     * the endpoint ({@code siw_cm_work_handler}'s PEER_CLOSE releases the socket, the endpoint is CLOSED, nobody is
     * told), and {@link Cep#accept} or {@link Cep#reject} then fail with ECONNRESET. Bytes the peer sends before the
     * reply (it should not; siw leaves them in the socket) are kept for the receive path ({@link Cep#early}), which
     * reads them first.
     *
     * @return whether the request was accepted; false when it was rejected, refused, or the peer closed its stream
     *         before the answer (the endpoint ended then)
     */
    boolean await() throws IOException {
        cep.ch.configureBlocking(false);
        try (Selector s = Selector.open()) {
            SelectionKey key = cep.ch.register(s, SelectionKey.OP_READ);
            cep.rxSelector = s; // accept, reject and the endpoint's end wake it
            while (!answer.isDone()) {
                s.select();
                s.selectedKeys().clear();
                if (answer.isDone() || key.interestOps() == 0) {
                    continue;
                }
                if (cep.early == null) {
                    cep.early = ByteBuffer.allocate(EARLY_BYTES);
                }
                int n;
                try {
                    n = cep.ch.read(cep.early);
                } catch (IOException e) {
                    n = -1; // a reset: gone as surely as a FIN
                }
                if (n < 0) {
                    synchronized (cep) {
                        if (answer.isDone()) {
                            break; // answered first: the receive path finds the end of the stream
                        }
                        closedBeforeAnswer = true;
                    }
                    cep.lost("the peer closed its stream before the answer", false);
                    return false;
                }
                if (!cep.early.hasRemaining()) {
                    key.interestOps(0); // a peer that floods before the reply is no longer watched
                }
            }
        } finally {
            cep.rxSelector = null;
        }
        return answer.getNow(false);
    }

    /** Whether the request was answered (or the endpoint ended). */
    boolean isAnswered() {
        return answer.isDone();
    }

    /** The answer is given: wakes the thread waiting in {@link #await}. */
    void answered(boolean accepted) {
        answer.complete(accepted);
        Selector s = cep.rxSelector;
        if (s != null) {
            s.wakeup();
        }
    }

    /** The endpoint ended: no answer will be taken. */
    void ended() {
        answer.complete(false);
    }

    /**
     * A request whose initiator closed its stream before the answer: {@code siw_accept} and {@code siw_reject} find
     * the endpoint out of state (CLOSED, not RECVD_MPAREQ) and return ECONNRESET before anything else, and the
     * iw_cm's request is answered by that failure ({@code iw_cm_accept} leaves CONN_RECV), so a second answer is
     * EINVAL. Under the endpoint's monitor.
     *
     * @param what {@code accept} or {@code reject}
     */
    void checkPeerStillThere(String what) {
        if (closedBeforeAnswer && !goneTold) {
            goneTold = true;
            throw new ErrnoException(Errno.ECONNRESET, "siw: " + what + " of " + cep.remote() + ": the peer closed "
                    + "its stream before the answer (siw_" + what + ": out of state)");
        }
    }
}
