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
 * <p>
 * It follows {@code check_psn} and {@code check_ack} but for these choices (the README's "Completer and
 * rxe_comp.c" lists them all): READ responses and atomic ACKs are taken for whichever READ or atomic in flight they
 * answer, in any order, without rxe's First/Middle/Last sequence check; a packet past a READ or atomic still waiting
 * retries it at the end of the burst received, not at once; an ACK never completes a READ or atomic; a PSN
 * sequence NAK retransmits at once, uncounted; {@code retry_cnt} 7 is seven retries, not rxe's "forever".
 */
final class Completer {
    private final Engine e;
    /** The sends and writes one acknowledgement completes, handed to the core at once. */
    private final ArrayList<SendWqe> acked = new ArrayList<>();
    /** The QPs a response in the burst being handled showed a gap to ({@link #gap}). */
    private final ArrayList<QpCtx> gaps = new ArrayList<>();

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
            c.answered(m.lastPsn);
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

    /** Whether {@code m} is a READ or an atomic, answered only by its responses. */
    private static boolean answeredByResponses(Msg m) {
        return m.readBuf != null || Requester.isAtomic(m.w);
    }

    /** The READ or atomic in flight whose PSNs hold {@code psn}, or null (a response of nothing waiting). */
    private static Msg holder(QpCtx c, int psn) {
        for (Msg m : c.inflight) {
            if (Packet.psnDiff(psn, m.firstPsn) < 0) {
                return null;
            }
            if (Packet.psnDiff(psn, m.lastPsn) <= 0) {
                return answeredByResponses(m) ? m : null;
            }
        }
        return null;
    }

    /**
     * Places the responses of {@code p} that {@code m}, a READ in flight, has not seen in its buffer, wherever they
     * come in its order, and moves its acknowledged PSN over those that now follow it without a hole.
     */
    private static void place(Msg m, Packet p) {
        int first = Packet.psnDiff(p.psn(), m.firstPsn); // the index in m of p's first response
        int seen = Packet.psnDiff(m.ackedThrough, m.firstPsn);
        for (int k = 0; k < p.count(); k++) {
            int i = first + k;
            if (i <= seen || i >= m.responses() || m.got.get(i)) {
                continue;
            }
            long at = (long) i * m.mtu;
            long from = (long) k * m.mtu;
            long n = Math.min(p.payload().length() - from, m.readBuf.length - at);
            if (n > 0) {
                p.payload().copyTo(from, MemorySegment.ofArray(m.readBuf).asSlice(at, n));
            }
            m.got.set(i);
        }
        int next = m.got.nextClearBit(seen + 1);
        m.ackedThrough = Packet.psnAdd(m.firstPsn, next - 1);
    }

    /** Whether a READ or an atomic has all its responses. */
    private static boolean answered(Msg m) {
        return m.readBuf != null ? m.ackedThrough == m.lastPsn : m.resultIn;
    }

    /**
     * Completes the READs and atomics at the head of the send queue that have all their responses, in order: their
     * data scattered, their result written; the responder made progress if {@code advanced} or one completed.
     */
    private void completeAnswered(QpCtx c, boolean advanced) {
        Msg m;
        while ((m = c.inflight.peekFirst()) != null && answeredByResponses(m) && answered(m)) {
            WcStatus st = WcStatus.SUCCESS;
            byte[] out = m.readBuf;
            if (out == null) {
                out = new byte[8];
                MemorySegment.ofArray(out).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, m.orig);
            }
            try {
                e.handle.memory().scatter(c.qp, m.w.wr().sgList(), MemorySegment.ofArray(out));
            } catch (AccessFault f) {
                st = f.status();
            }
            if (!finishOne(c, st)) {
                return;
            }
            c.answered(m.lastPsn);
            advanced = true;
        }
        if (advanced && !c.inflight.isEmpty()) {
            progress(c);
        }
    }

    /**
     * A response came past the first PSN the oldest message in flight, a READ or an atomic, still waits for: one
     * before it was lost, or comes behind it. Whether it was lost is decided once the burst it came in has been
     * handled ({@link #flushRetries}): a response reordered inside a burst is no loss.
     */
    private void gap(QpCtx c) {
        if (!c.gapSeen) {
            c.gapSeen = true;
            gaps.add(c);
        }
    }

    /**
     * At the end of a burst received: the READ or atomic that saw a response past the one it waits for and waits
     * for it still asks again, from there ({@link #askAgain}).
     */
    void flushRetries() {
        for (int i = 0; i < gaps.size(); i++) {
            QpCtx c = gaps.get(i);
            c.gapSeen = false;
            c.dropFlushed();
            Msg m = c.inflight.peekFirst();
            if (m != null && answeredByResponses(m) && !answered(m)) {
                askAgain(c, m);
            }
        }
        gaps.clear();
    }

    /**
     * Resends the oldest message in flight from the PSN it waits for (a READ's rest, an atomic whole) and what follows
     * it, unless a retry is on its way already: until the response to that retry's first PSN comes, the responses
     * seen out of place are those of the requests sent before it, or its own behind a response reordered, and
     * asking again for each would put one more copy of everything in flight on the wire every time
     * ({@code rxe_comp.c} {@code COMPST_ERROR_RETRY}: "if we've started a retry, don't start another retry
     * sequence, unless this is a timeout"; the transport timer still retries). Each retry counts against
     * {@code retry_cnt} as a timeout's does; with none left the message ends in RETRY_EXC_ERR.
     */
    private void askAgain(QpCtx c, Msg m) {
        if (c.retryStarted) {
            return;
        }
        if (c.retryLeft <= 0) {
            e.counters.retryExceeded++;
            finish(c, WcStatus.RETRY_EXC_ERR);
            e.requester.run(c);
            return;
        }
        c.retryLeft--;
        e.counters.retries++;
        e.requester.retransmit(c, Packet.psnAdd(m.ackedThrough, 1));
    }

    /**
     * The completer: ACK/NAK, read responses and atomic acknowledgements for the messages in flight. A response to
     * a READ or an atomic is taken whichever of those in flight it answers, in any order, and they complete in
     * order once answered; a response past the PSN the oldest waits for shows a gap ({@code rxe_comp.c}
     * {@code check_psn}: a response past a read or atomic WQE is {@code COMPST_ERROR_RETRY}).
     */
    void onResponse(QpCtx c, Packet p) {
        c.dropFlushed();
        if (c.inflight.isEmpty()) {
            return;
        }
        switch (p.op()) {
            case READ_RESP, ATOMIC_ACK -> {
                implicitAck(c, p.psn());
                Msg h = c.inflight.peekFirst();
                if (h == null) {
                    return;
                }
                if (p.op() == Packet.Op.READ_RESP && p.first() && h.readBuf == null
                        && Packet.psnDiff(p.psn(), h.ackedThrough) > 0 && Packet.psnDiff(p.psn(), h.lastPsn) <= 0) {
                    // check_ack: the start of a read response where the oldest request, not a READ, waits for
                    // its answer; the responder broke the protocol: IB_WC_FATAL_ERR
                    finish(c, WcStatus.FATAL_ERR);
                    return;
                }
                Msg m = holder(c, p.psn());
                boolean advanced = false;
                if (m != null && p.op() == Packet.Op.READ_RESP && m.readBuf != null
                        && Packet.psnDiff(p.lastPsn(), m.lastPsn) <= 0) {
                    int before = m.ackedThrough;
                    place(m, p);
                    advanced = m.ackedThrough != before;
                } else if (m != null && p.op() == Packet.Op.ATOMIC_ACK && m.readBuf == null && p.psn() == m.firstPsn
                        && !m.resultIn) {
                    m.orig = p.orig();
                    m.resultIn = true;
                    advanced = true;
                }
                completeAnswered(c, advanced);
                h = c.inflight.peekFirst();
                if (h != null && answeredByResponses(h)) {
                    c.answered(h.ackedThrough); // the oldest's responses taken in order: a retry's may be among them
                    if (Packet.psnDiff(p.lastPsn(), h.ackedThrough) > 1) {
                        gap(c);
                    }
                }
            }
            case ACK -> {
                int syn = p.syndrome();
                // an ACK acknowledges its PSN and every one before it, a NAK every one before its PSN
                implicitAck(c, syn == Packet.AETH_ACK ? Packet.psnAdd(p.psn(), 1) : p.psn());
                Msg m = c.inflight.peekFirst();
                if (m == null) {
                    return;
                }
                if (answeredByResponses(m) && Packet.psnDiff(p.psn(), m.lastPsn) > 0) {
                    // past a READ or an atomic that still waits for its responses: the responder answered them
                    // before this, so they were lost (check_psn: COMPST_ERROR_RETRY, the packet dropped)
                    gap(c);
                    return;
                }
                if (syn == Packet.AETH_ACK) {
                    // a coalesced ACK inside a long SEND or WRITE; a READ or an atomic is answered only by its
                    // responses (an ACK whose PSN covers one, as a duplicate's ACK may, says nothing of its data)
                    if (!answeredByResponses(m) && Packet.psnDiff(p.psn(), m.firstPsn) >= 0) {
                        m.ackedThrough = p.psn();
                        c.answered(p.psn());
                        progress(c);
                    }
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
                                c.answered(before);
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
