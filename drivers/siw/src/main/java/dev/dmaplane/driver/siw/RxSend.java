package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.spi.RecvResult;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * A connection's placement of untagged SEND segments into the receive their message consumes ({@code siw_proc_send},
 * with {@code siw_send_check_ntoh}) and the receive's completion ({@code siw_rdmap_complete} for a SEND, the
 * invalidation of a SEND with Invalidate); the receive path ({@link Rx}) hands it the segments and answers its
 * errors.
 */
final class RxSend {
    private static final Logger LOG = LoggerFactory.getLogger(RxSend.class);

    private final Rx rx;
    private final SiwProvider dev;
    private final MemoryAccess mem;
    /** The STag the SEND with Invalidate in progress names ({@code srx->inval_stag}, read on its first segment). */
    private int invStag;
    /** The leases of the receive the SEND being placed fills, or null between messages. */
    private SgeLeases untagged;
    /**
     * The bytes of the SEND segment being placed that went into its receive's SGEs so far ({@code rcvd_bytes} of
     * {@code siw_proc_send}), counted through {@link #placedPiece}, made once.
     */
    private long segmentPlaced;
    private final LongConsumer placedPiece = n -> segmentPlaced += n;

    RxSend(Rx rx, SiwProvider dev, MemoryAccess mem) {
        this.rx = rx;
        this.dev = dev;
        this.mem = mem;
    }

    /**
     * {@code siw_proc_send}: an untagged segment into the receive its message consumes. A message's first segment
     * takes the receive ({@code siw_rqe_get}; none: DDP Untagged Buffer Error, no buffer, no async event); then every
     * segment is checked before anything of it is placed ({@code siw_send_check_ntoh}: queue number 0, the MSN
     * expected, the message offset reached, room left in the receive; DDP Untagged Buffer Error with Invalid QN,
     * Invalid MSN, Invalid MO or, for a receive too short, no buffer and LOC_LEN_ERR), each raising QP_FATAL; the
     * receive's memory refused is a DDP Catastrophic Error with QP_ACCESS_ERR ({@code siw_check_sge}). Whatever
     * fails, {@code siw_rdmap_complete} completes the receive with its status (GENERAL_ERR unless LOC_LEN_ERR) and
     * the bytes of the segments placed before, and for a refused SGE those of the SGEs this segment filled before
     * it ({@code wqe->processed += rcvd_bytes} when the loop stops).
     *
     * @param first  the segment starts its message ({@code first_ddp_seg})
     * @param crcBad the FPDU failed its CRC: the receive ends in error once the bytes are placed
     */
    void segment(SiwQp q, Iwarp.Segment s, MemorySegment payload, boolean first, boolean crcBad) {
        if (first) {
            RecvWqe taken = q.hw.takeRecv();
            close();
            if (taken == null) {
                // siw_proc_send: siw_rqe_get finds none; the TERMINATE alone, no async event
                rx.fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                        Terminate.DDP_UT_NO_BUFFER), null, "no receive posted");
                return;
            }
            q.startRecv(taken);
            invStag = s.invStag();
        }
        RecvWqe r = q.recv;
        if (r == null) {
            return; // flushed under the message by a modify to ERR: nothing is placed
        }
        long n = payload.byteSize();
        int code = s.qn() != Iwarp.QN_SEND ? Terminate.DDP_UT_INVALID_QN
                : s.msn() != q.rxMsn[Iwarp.QN_SEND] + 1 ? Terminate.DDP_UT_INVALID_MSN
                : Integer.toUnsignedLong(s.mo()) != q.recvBytes ? Terminate.DDP_UT_INVALID_MO
                : r.length() < q.recvBytes + n ? Terminate.DDP_UT_NO_BUFFER : -1;
        if (code >= 0) {
            end(q, code == Terminate.DDP_UT_NO_BUFFER ? WcStatus.LOC_LEN_ERR : WcStatus.GENERAL_ERR);
            rx.fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER, code), EventType.QP_FATAL,
                    "SEND segment QN " + s.qn() + " MSN " + s.msn() + " MO " + Integer.toUnsignedLong(s.mo())
                            + " of " + n + " bytes into a receive of " + r.length() + " with " + q.recvBytes
                            + " placed");
            return;
        }
        if (n > 0) {
            List<Sge> sgl = r.wr().sgList();
            if (untagged == null) {
                untagged = new SgeLeases(sgl.size(), dev.regions, WcStatus.LOC_PROT_ERR); // siw_check_sge each time
            }
            try {
                long upTo = q.recvBytes + n;
                segmentPlaced = 0;
                Sgl.write(mem, q.hw, sgl, s.mo(), payload, untagged, () -> upTo + rx.following(s), placedPiece);
            } catch (AccessFault e) {
                LOG.debug("siw: qp {} receive placement refused", q.hw.qpNum(), e);
                q.recvBytes += segmentPlaced; // siw_proc_send: wqe->processed += rcvd_bytes, the SGEs placed before
                end(q, WcStatus.GENERAL_ERR);
                rx.fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_CATASTROPHIC, Terminate.DDP_C_UNSPECIFIED),
                        EventType.QP_ACCESS_ERR, e.getMessage());
                return;
            }
        }
        q.recvBytes += n;
        if (crcBad) {
            // siw_rdmap_complete(qp, -EINVAL) after the trailer: the receive ends with GENERAL_ERR and the bytes
            // placed so far
            end(q, WcStatus.GENERAL_ERR);
            return;
        }
        if (s.last()) {
            complete(q, s.opcode());
        }
    }

    /**
     * {@code siw_rdmap_complete(qp, 0)} for a SEND: the receive completes with the bytes placed, after the
     * invalidation a SEND with Invalidate asks for. An STag {@code siw_invalidate_stag} refuses sets up a TERMINATE
     * of the RDMAP layer, Remote Protection Error (a region of another PD) or Remote Operation Error (no region),
     * code Cannot Invalidate, and the receive completes with REM_INV_REQ_ERR and the bytes placed, no async event.
     * The QP stays in RTS on its connection (a completion's error does not move a siw QP), and the TERMINATE waits
     * for the connection's drop ({@link SiwQp#termInfo}): a modify to ERR, CLOSING or TERMINATE, or an error of
     * either side, sends it in place of its own.
     */
    private void complete(SiwQp q, int op) {
        close();
        q.rxMsn[Iwarp.QN_SEND]++;
        RecvWqe r = q.takeRecvInProgress();
        if (r == null) {
            return;
        }
        boolean se = op == Iwarp.OP_SEND_SE || op == Iwarp.OP_SEND_SE_INV;
        if (op != Iwarp.OP_SEND_INV && op != Iwarp.OP_SEND_SE_INV) {
            q.hw.completeRecv(r, RecvResult.send(q.recvBytes, 0, se));
        } else if (mem.invalidateRemote(q.hw, invStag)) {
            q.hw.completeRecv(r, RecvResult.sendWithInv(q.recvBytes, 0, invStag, se));
        } else {
            LOG.debug("siw: qp {} cannot invalidate STag 0x{}", q.hw.qpNum(), Integer.toHexString(invStag));
            q.termInfo = q.initTerminate(rx.copyingHeaders(new Terminate(Terminate.LAYER_RDMAP,
                    dev.regions.invalidateErrorType(q, invStag), Terminate.RDMAP_CANNOT_INVALIDATE)));
            q.hw.completeRecv(r, new RecvResult(WcStatus.REM_INV_REQ_ERR, WcOpcode.RECV, q.recvBytes, 0, 0, 0, 0, 0,
                    se));
        }
    }

    /**
     * {@code siw_rdmap_complete(qp, error)} for a SEND: the receive in progress completes with {@code status} and the
     * bytes placed before; the queue's MSN moves on.
     */
    void end(SiwQp q, WcStatus status) {
        close();
        q.rxMsn[Iwarp.QN_SEND]++;
        RecvWqe r = q.takeRecvInProgress();
        if (r != null) {
            q.hw.completeRecv(r, new RecvResult(status, WcOpcode.RECV, q.recvBytes, 0, 0, 0, 0, 0, true));
        }
    }

    /**
     * {@code siw_rdmap_complete(qp, -EPROTO)} of a packet intersection inside a SEND: the receive completes with
     * GENERAL_ERR and the bytes placed.
     */
    void intersected(SiwQp q) {
        end(q, WcStatus.GENERAL_ERR);
    }

    /** Closes the leases of the receive being filled; the message, if it goes on, takes new ones. */
    void letGo() {
        if (untagged != null) {
            untagged.close();
        }
    }

    private void close() {
        if (untagged != null) {
            untagged.close();
            untagged = null;
        }
    }
}
