package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;

/**
 * A connection's placement of Read Response segments into the sink of the oldest READ outstanding
 * ({@code siw_proc_rresp}, with {@code siw_orqe_start_rx} and {@code siw_rresp_check_ntoh}) and the sink's memory
 * kept to the READ's end ({@code wqe->mem[0]}); the receive path ({@link Rx}) hands it the segments and answers its
 * errors.
 */
final class RxReadResponse {
    private static final Logger LOG = LoggerFactory.getLogger(RxReadResponse.class);

    private final Rx rx;
    private final SiwProvider dev;
    private final MemoryAccess mem;
    /**
     * The sink of the READ whose response is being placed ({@code wqe->mem[0]}): leased whole when its first segment
     * with data came ({@code siw_check_sge} over {@code wqe->bytes}) and retained ({@link DmaLease#retain}), so that
     * it serves every later segment whatever happened to the STag meanwhile, across waits for the stream, and holds
     * off no deregistration (the pages stay pinned until it closes, as {@code siw_mem_put} frees the memory at the
     * last reference); closed when the READ completes or fails and when it is flushed (the stream dropped or taken
     * over). Null between READs, and when the sink's lease is not stable (then leased per FPDU).
     */
    private DmaLease sink;
    /** The tagged offset and STag {@link #sink} starts at ({@code sge->laddr}, {@code sge->lkey}). */
    private long sinkTo;
    private int sinkStag;
    /** The sink of the READ whose response is being placed was checked ({@code wqe->mem[0]} set). */
    private boolean sinkChecked;

    RxReadResponse(Rx rx, SiwProvider dev, MemoryAccess mem) {
        this.rx = rx;
        this.dev = dev;
        this.mem = mem;
    }

    /**
     * {@code siw_proc_rresp}: a Read Response segment into the sink of the oldest READ outstanding. Its first segment
     * needs a READ waiting for it (else DDP Catastrophic Error, no async event, nothing completed:
     * {@code siw_orqe_start_rx}) and must name that READ's sink STag and offset and, as the only segment, its length
     * ({@code siw_rresp_check_ntoh}: Invalid STag, Base or Bounds, QP_FATAL, the READ completed with GENERAL_ERR).
     * The sink is checked once, whole, at the first segment with data ({@code siw_check_sge} only while
     * {@code wqe->mem[0]} is unset), and its memory kept to the READ's end ({@link #sink}): a later segment is placed
     * whatever happened to the STag meanwhile (an invalidation, a deregistration), also one read after the thread
     * waited for the stream. A refused sink fails the READ with LOC_PROT_ERR, a DDP Tagged Buffer Error and
     * QP_ACCESS_ERR.
     *
     * @param first  the segment starts its message ({@code first_ddp_seg})
     * @param crcBad the FPDU failed its CRC: the READ fails once the bytes are placed
     */
    void segment(SiwQp q, Iwarp.Segment s, MemorySegment payload, boolean first, boolean crcBad) {
        long n = payload.byteSize();
        if (first) {
            close();
            sinkChecked = false;
            if (!matches(q, s, n)) {
                return;
            }
        }
        if (n > 0) {
            Sge target = q.readSink();
            if (target == null) {
                return; // flushed under the response by a modify to ERR: nothing is placed
            }
            if (!sinkChecked && !checkSink(q, target)) {
                return;
            }
            try {
                place(q, s, payload);
            } catch (AccessFault e) {
                refused(q, e, dev.regions.taggedError(q, s.stag(), s.to(), n));
                return;
            }
        }
        if (crcBad) {
            // siw_rdmap_complete(qp, -EINVAL) after the trailer: the bytes are placed, the READ fails with GENERAL_ERR
            close();
            q.readDone(WcStatus.GENERAL_ERR);
            return;
        }
        if (s.last()) {
            close(); // siw_wqe_put_mem(wqe, SIW_OP_READ)
            q.readDone(WcStatus.SUCCESS);
            dev.tx.kick(q); // a fenced request or one waiting for ORD room may go now
        }
    }

    /**
     * {@code siw_check_sge} over the whole sink {@code target} ({@code wqe->bytes} from offset 0): its lease retained
     * as {@link #sink} when stable; refused, the READ fails ({@link #refused}).
     *
     * @return whether the sink was granted
     */
    private boolean checkSink(SiwQp q, Sge target) {
        sinkChecked = true;
        DmaLease whole;
        try {
            whole = mem.remote(q.hw, target.lkey(), target.addr(), target.length(), Access.REMOTE_WRITE);
        } catch (AccessFault e) {
            refused(q, e, dev.regions.taggedError(q, target.lkey(), target.addr(), target.length()));
            return false;
        }
        if (whole.stable()) {
            sink = whole.retain();
            sinkTo = target.addr();
            sinkStag = target.lkey();
        } else {
            whole.close(); // checked; the bytes go through a lease per FPDU
        }
        return true;
    }

    /**
     * Places a Read Response segment through {@link #sink} when it lies inside it, else through a lease of its own
     * bytes (a sink leased per FPDU, or a segment beyond the sink).
     *
     * @throws AccessFault when that lease is refused
     */
    private void place(SiwQp q, Iwarp.Segment s, MemorySegment payload) {
        long n = payload.byteSize();
        DmaLease l = sink;
        long off = s.to() - sinkTo;
        if (l != null && s.stag() == sinkStag && Long.compareUnsigned(off, l.length()) <= 0
                && Long.compareUnsigned(n, l.length() - off) <= 0) {
            l.write(off, payload);
            return;
        }
        try (DmaLease piece = mem.remote(q.hw, s.stag(), s.to(), n, Access.REMOTE_WRITE)) {
            piece.write(0, payload);
        }
    }

    /** {@code siw_proc_rresp} refused the sink: the READ fails with LOC_PROT_ERR, DDP {@code code}, QP_ACCESS_ERR. */
    private void refused(SiwQp q, AccessFault e, int code) {
        LOG.debug("siw: qp {} Read Response placement refused", q.hw.qpNum(), e);
        close();
        q.readDone(WcStatus.LOC_PROT_ERR);
        rx.fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER, code), EventType.QP_ACCESS_ERR,
                e.getMessage());
    }

    /**
     * {@code siw_orqe_start_rx} and {@code siw_rresp_check_ntoh} on a Read Response's first segment of {@code n}
     * bytes; refused, the TERMINATE is set up and the READ completed as siw does.
     */
    private boolean matches(SiwQp q, Iwarp.Segment s, long n) {
        Sge sink = q.readSink();
        if (sink == null) {
            rx.fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_CATASTROPHIC, Terminate.DDP_C_UNSPECIFIED),
                    null, "a Read Response with no READ outstanding");
            return false;
        }
        int code = s.stag() != sink.lkey() ? Terminate.DDP_T_INVALID_STAG
                : s.to() != sink.addr() || (s.last() && n != sink.length()) ? Terminate.DDP_T_BASE_BOUNDS : -1;
        if (code < 0) {
            return true;
        }
        q.readDone(WcStatus.GENERAL_ERR);
        rx.fail(q, new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER, code), EventType.QP_FATAL,
                "Read Response of " + n + " bytes at STag 0x" + Integer.toHexString(s.stag()) + " offset 0x"
                        + Long.toHexString(s.to()) + " for a READ into " + sink);
        return false;
    }

    /**
     * {@code siw_rdmap_complete(qp, -EPROTO)} of a packet intersection inside a Read Response: the sink let go of and
     * the READ completed with GENERAL_ERR.
     */
    void intersected(SiwQp q) {
        close();
        q.readDone(WcStatus.GENERAL_ERR);
    }

    /** Drops the memory reference of the READ's sink ({@code siw_wqe_put_mem}), if one is kept. */
    void close() {
        DmaLease l = sink;
        if (l != null) {
            sink = null;
            l.close();
        }
    }
}
