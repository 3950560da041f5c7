package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.WcStatus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;

/**
 * The completer of one HCA ({@code rxe_comp.c}): ACKs, NAKs, read responses and atomic acknowledgements for the
 * messages in flight, completions in order, the retry and RNR counts. Runs on the thread running its
 * {@link Engine}.
 */
final class Completer {
    private final Engine e;
    /** The sends and writes one acknowledgement completes, handed to the core at once. */
    private final ArrayList<SendWqe> acked = new ArrayList<>();

    Completer(Engine e) {
        this.e = e;
    }

    /** The responder made progress: restart the transport timer and the retry count (IBTA 9.7.6.1.2). */
    void progress(QpCtx c) {
        var a = c.qp.attr();
        c.retryLeft = a.retryCnt();
        c.rnrLeft = a.rnrRetry();
        if (!c.rnrWait) {
            e.timers.arm(c, System.nanoTime() + Timers.timeoutNs(a.timeout()));
        }
    }

    /** Completes the oldest message in flight; on success, what is left in flight made progress. */
    void finish(QpCtx c, WcStatus status) {
        if (finishOne(c, status) && !c.inflight.isEmpty()) {
            progress(c);
        }
    }

    /** Completes the oldest message in flight; whether it succeeded (and anything was in flight). */
    private boolean finishOne(QpCtx c, WcStatus status) {
        Msg m = c.inflight.pollFirst();
        if (m == null) {
            return false;
        }
        if (Requester.isReadOrAtomic(m.w)) {
            c.readsInFlight--;
        }
        c.rnrWait = false;
        if (!m.w.isCompleted()) {
            c.qp.completeSend(m.w, status);
        }
        if (status != WcStatus.SUCCESS) {
            c.inflight.clear(); // flushed by the core with the QP's move to ERR
            c.readsInFlight = 0;
            c.held = null;
            c.heldStatus = null;
            return false;
        }
        return true;
    }

    /** Completes the sends and writes before {@code psn} (a later response acknowledges them implicitly). */
    void implicitAck(QpCtx c, int psn) {
        Msg m;
        while ((m = c.inflight.peekFirst()) != null && m.readBuf == null && !Requester.isAtomic(m.w)
                && Packet.psnDiff(m.lastPsn, psn) < 0) {
            c.inflight.pollFirst();
            c.rnrWait = false;
            if (!m.w.isCompleted()) {
                acked.add(m.w);
            }
        }
        if (acked.isEmpty()) {
            return;
        }
        try {
            c.qp.completeSends(acked); // in order, under one lock of the QP
        } finally {
            acked.clear();
        }
        if (!c.inflight.isEmpty()) {
            progress(c); // once for the lot
        }
    }

    /**
     * Whether a read response or an atomic acknowledgement for a later request found the oldest message in flight, a
     * READ or an atomic, still waiting for its own: the responder answers in PSN order, so those were lost, and the
     * requester asks again now instead of at the transport timeout ({@code rxe_comp.c} {@code check_psn}: a response
     * past a read or atomic WQE is {@code COMPST_ERROR_RETRY}), once per PSN it waits for.
     */
    private boolean lostBefore(QpCtx c, Msg m, int psn) {
        if (m.readBuf == null && !Requester.isAtomic(m.w) || Packet.psnDiff(psn, m.lastPsn) <= 0) {
            return false;
        }
        askAgain(c, m);
        return true;
    }

    /**
     * Resends the oldest message in flight from the PSN it waits for (a READ's rest, an atomic whole) and what follows
     * it, once per such PSN.
     */
    private void askAgain(QpCtx c, Msg m) {
        int expect = Packet.psnAdd(m.ackedThrough, 1);
        if (m.rerequested != expect) {
            m.rerequested = expect;
            e.counters.retries++;
            e.requester.retransmit(c, expect);
        }
    }

    /** The completer: ACK/NAK, read responses and atomic acknowledgements for the messages in flight. */
    void onResponse(QpCtx c, Packet p) {
        c.dropFlushed();
        if (c.inflight.isEmpty()) {
            return;
        }
        switch (p.op()) {
            case READ_RESP -> {
                implicitAck(c, p.psn());
                Msg m = c.inflight.peekFirst();
                if (m == null || lostBefore(c, m, p.psn()) || m.readBuf == null) {
                    return;
                }
                int expect = Packet.psnAdd(m.ackedThrough, 1); // the next response this read waits for
                if (Packet.psnDiff(p.lastPsn(), m.lastPsn) > 0 || Packet.psnDiff(p.lastPsn(), expect) < 0) {
                    return; // another request's, or seen already
                }
                int gap = Packet.psnDiff(p.psn(), expect);
                if (gap > 0) {
                    // a response went missing: reissue the RDMA READ for the remaining data, from the PSN missing
                    // (IBTA RC requester behaviour), once per gap
                    askAgain(c, m);
                    return;
                }
                long at = (long) Packet.psnDiff(expect, m.firstPsn) * m.mtu;
                long from = (long) -gap * m.mtu; // the part of a train seen already
                long n = Math.min(p.payload().length() - from, m.readBuf.length - at);
                if (n > 0) {
                    p.payload().copyTo(from, MemorySegment.ofArray(m.readBuf).asSlice(at, n));
                }
                m.ackedThrough = p.lastPsn();
                progress(c);
                if (p.lastPsn() == m.lastPsn) {
                    WcStatus st = WcStatus.SUCCESS;
                    try {
                        e.handle.memory().scatter(c.qp, m.w.wr().sgList(), MemorySegment.ofArray(m.readBuf));
                    } catch (AccessFault f) {
                        st = f.status();
                    }
                    finish(c, st);
                }
            }
            case ATOMIC_ACK -> {
                implicitAck(c, p.psn());
                Msg m = c.inflight.peekFirst();
                if (m == null || lostBefore(c, m, p.psn()) || p.psn() != m.firstPsn || m.readBuf != null || m.data != null) {
                    return;
                }
                byte[] out = new byte[8];
                MemorySegment.ofArray(out).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, p.orig());
                WcStatus st = WcStatus.SUCCESS;
                try {
                    e.handle.memory().scatter(c.qp, m.w.wr().sgList(), MemorySegment.ofArray(out));
                } catch (AccessFault f) {
                    st = f.status();
                }
                finish(c, st);
            }
            case ACK -> {
                int syn = p.syndrome();
                if (syn == Packet.AETH_ACK) {
                    implicitAck(c, Packet.psnAdd(p.psn(), 1));
                    Msg m = c.inflight.peekFirst();
                    // a coalesced ACK inside a long SEND or WRITE; a READ or an atomic is answered only by its
                    // responses (an ACK whose PSN covers one, as a duplicate's ACK may, says nothing of its data)
                    if (m != null && m.readBuf == null && !Requester.isAtomic(m.w)
                            && Packet.psnDiff(p.psn(), m.firstPsn) >= 0) {
                        m.ackedThrough = p.psn();
                        progress(c);
                    }
                    return;
                }
                implicitAck(c, p.psn()); // a NAK acknowledges everything before its PSN
                Msg m = c.inflight.peekFirst();
                if (m == null) {
                    return;
                }
                if ((syn & 0x60) == Packet.AETH_RNR) {
                    e.counters.rnrNaksRcvd++;
                    if (c.rnrWait) {
                        return;
                    }
                    if (c.rnrLeft != 7 && c.rnrLeft-- <= 0) {
                        e.counters.rnrRetryExceeded++;
                        finish(c, WcStatus.RNR_RETRY_EXC_ERR);
                    } else {
                        c.rnrWait = true;
                        e.timers.arm(c, System.nanoTime() + Timers.rnrNs(syn & 31));
                    }
                } else {
                    switch (syn) {
                        case Packet.AETH_NAK_PSN_SEQ -> {
                            e.counters.seqNaksRcvd++;
                            // it acknowledges every packet before its PSN (IBTA 9.7.5.1.1): inside a SEND or
                            // WRITE that is progress, which gives the retries back (rxe_comp.c check_ack)
                            int before = Packet.psnAdd(p.psn(), -1);
                            if (m.readBuf == null && !Requester.isAtomic(m.w)
                                    && Packet.psnDiff(before, m.ackedThrough) > 0
                                    && Packet.psnDiff(before, m.lastPsn) < 0) {
                                m.ackedThrough = before;
                                progress(c);
                            }
                            if (!c.rnrWait) {
                                e.counters.retries++;
                                e.requester.retransmit(c, p.psn()); // from the PSN the responder expects
                            }
                        }
                        case Packet.AETH_NAK_INV_REQ -> finish(c, WcStatus.REM_INV_REQ_ERR);
                        case Packet.AETH_NAK_REM_ACCESS -> finish(c, WcStatus.REM_ACCESS_ERR);
                        default -> finish(c, WcStatus.REM_OP_ERR);
                    }
                }
            }
            default -> {
            }
        }
    }
}
