package dev.dmaplane.driver.siw;

import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * A TERMINATE message (RFC 5040, sections 4.8 and 8; {@code siw_init_terminate}, {@code siw_send_terminate}): the
 * layer that found the error (RDMAP 0, DDP 1, LLP/MPA 2), its error type and code, as RFC 5040 section 7 and RFC 5041
 * section 7 number them, and the headers of the segment that failed as siw copies them behind the control word
 * ({@link #failed}).
 *
 * @param layer  layer
 * @param etype  error type within the layer
 * @param ecode  error code within the type
 * @param failed the copied headers of the failed segment as they go on the wire behind the control word: the DDP
 *               Segment Length field (where the MPA length was) and the DDP header, with the RDMAP header of a
 *               Read Request when the R flag is set; null when {@code siw_send_terminate} attaches none
 */
record Terminate(int layer, int etype, int ecode, byte[] failed) {
    static final int LAYER_RDMAP = 0;
    static final int LAYER_DDP = 1;
    static final int LAYER_LLP = 2;

    /** RDMAP error types. */
    static final int RDMAP_LOCAL_CATASTROPHIC = 0;
    static final int RDMAP_REMOTE_PROTECTION = 1;
    static final int RDMAP_REMOTE_OPERATION = 2;
    /** RDMAP Remote Protection Error codes. */
    static final int RDMAP_INVALID_STAG = 0x00;
    static final int RDMAP_BASE_BOUNDS = 0x01;
    static final int RDMAP_ACCESS_RIGHTS = 0x02;
    static final int RDMAP_STAG_NOT_ASSOC = 0x03;
    static final int RDMAP_CANNOT_INVALIDATE = 0x09;
    /**
     * RDMAP Remote Operation Error codes (RFC 5040 section 7: one numbering for both RDMAP error types, as
     * {@code enum rdmap_ecode} of {@code iwarp.h}).
     */
    static final int RDMAP_INVALID_VERSION = 0x05;
    static final int RDMAP_UNEXPECTED_OPCODE = 0x06;
    /** Catastrophic error, localized to the RDMAP stream: what siw sends when a READ request overflows its IRQ. */
    static final int RDMAP_CATASTROPHIC_STREAM = 0x07;
    /**
     * {@code RDMAP_ECODE_UNSPECIFIED}: no code given; siw sends it with a Local Catastrophic Error when its consumer
     * moves the QP to TERMINATE ({@code siw_qp_nextstate_from_rts}).
     */
    static final int RDMAP_UNSPECIFIED = 0xff;

    /** DDP error types. */
    static final int DDP_CATASTROPHIC = 0;
    /** The one code of a DDP Catastrophic Error ({@code DDP_ECODE_CATASTROPHIC}: unspecified, zero). */
    static final int DDP_C_UNSPECIFIED = 0x00;
    static final int DDP_TAGGED_BUFFER = 1;
    static final int DDP_UNTAGGED_BUFFER = 2;
    /** DDP Tagged Buffer Error codes. */
    static final int DDP_T_INVALID_STAG = 0x00;
    static final int DDP_T_BASE_BOUNDS = 0x01;
    static final int DDP_T_STAG_NOT_ASSOC = 0x02;
    /** {@code DDP_ECODE_T_VERSION}: a tagged segment of a DDP version other than 1. */
    static final int DDP_T_INVALID_VERSION = 0x04;
    /** DDP Untagged Buffer Error codes. */
    static final int DDP_UT_INVALID_QN = 0x01;
    /**
     * {@code DDP_ECODE_UT_INVALID_MSN_NOBUF}, Invalid MSN - no buffer available: siw sends it for a SEND without a
     * receive and for a SEND longer than its receive ({@code siw_send_check_ntoh}), not Message Too Long.
     */
    static final int DDP_UT_NO_BUFFER = 0x02;
    /** {@code DDP_ECODE_UT_INVALID_MSN_RANGE}: an MSN other than the one expected on its queue. */
    static final int DDP_UT_INVALID_MSN = 0x03;
    static final int DDP_UT_INVALID_MO = 0x04;
    static final int DDP_UT_INVALID_VERSION = 0x06;

    /**
     * LLP (MPA) error type 0 with its codes (RFC 5044 section 8, and those RFC 6581 adds for the enhanced connection
     * establishment; {@code enum llp_ecode}).
     */
    static final int LLP_MPA = 0;
    static final int LLP_CRC = 0x02;
    /** {@code LLP_ECODE_INVALID_REQ_RESP}: an MPA request or reply that is not one (siw: a reply with a wrong key). */
    static final int LLP_INVALID_REQ_RESP = 0x04;
    /** RFC 6581: the responder's ORD exceeds what the initiator's IRD can take. */
    static final int LLP_INSUFFICIENT_IRD = 0x06;
    /** RFC 6581: the reply picked no RTR message the initiator offered. */
    static final int LLP_NO_MATCHING_RTR = 0x07;

    /** The header-control bits of the control word (RFC 5040 section 8: M, D, R; {@code TERM_FLAG_M} etc.). */
    static final int FLAG_M = 0x8000;
    static final int FLAG_D = 0x4000;
    static final int FLAG_R = 0x2000;

    /** {@code sizeof(struct iwarp_ctrl_tagged)}, {@code sizeof(struct iwarp_rdma_write)}: MPA length, tagged header. */
    static final int COPY_TAGGED = 2 + Iwarp.TAGGED_HDR;
    /** {@code sizeof(struct iwarp_ctrl_untagged)}, {@code sizeof(struct iwarp_send)}: MPA length, untagged header. */
    static final int COPY_UNTAGGED = 2 + Iwarp.UNTAGGED_HDR;
    /** {@code sizeof(struct iwarp_rdma_rreq)}: MPA length, untagged header and the Read Request's body. */
    static final int COPY_READ_REQUEST = COPY_UNTAGGED + Iwarp.READ_REQUEST_BODY;

    /** A TERMINATE that carries no copy of a failed segment. */
    Terminate(int layer, int etype, int ecode) {
        this(layer, etype, ecode, null);
    }

    /**
     * The control word as sent: layer and type, code, then the header-control bits as {@code siw_send_terminate}
     * sets them (M and D with any copied header, R too for a Remote Protection Error of the RDMAP layer), reserved
     * bits zero.
     */
    int word() {
        int hdrct = failed == null ? 0
                : FLAG_M | FLAG_D | (layer == LAYER_RDMAP && etype == RDMAP_REMOTE_PROTECTION ? FLAG_R : 0);
        return (layer & 0xf) << 28 | (etype & 0xf) << 24 | (ecode & 0xff) << 16 | hdrct;
    }

    /** The ULPDU's length: untagged header, control word and the copied headers ({@code len_terminate} less MPA). */
    int ulpdu() {
        return Iwarp.UNTAGGED_HDR + Iwarp.TERMINATE_BODY + (failed == null ? 0 : failed.length);
    }

    /**
     * Writes the ULPDU at the buffer's position, as {@code siw_send_terminate} lays it out: untagged, last, queue 2,
     * MSN {@code msn}, message offset 0, the control word, the copied headers.
     */
    void put(ByteBuffer b, int msn) {
        Iwarp.untagged(b, Iwarp.OP_TERMINATE, true, 0, Iwarp.QN_TERMINATE, msn, 0);
        b.putInt(word());
        if (failed != null) {
            b.put(failed);
        }
    }

    /**
     * {@code siw_send_terminate} as one FPDU: MSN 1 (siw numbers every TERMINATE 1, the first and only one of its
     * queue), a CRC32C over all of it.
     */
    byte[] fpdu() {
        int ulpdu = ulpdu();
        byte[] f = new byte[Mpa.fpduLength(ulpdu)];
        put(ByteBuffer.wrap(f, 2, ulpdu), 1);
        Mpa.seal(ByteBuffer.wrap(f), 0, ulpdu);
        return f;
    }

    /**
     * How many bytes of the failed inbound segment {@code siw_send_terminate} copies for this error, by the T flag
     * and opcode of that segment: none for the LLP layer, a Local Catastrophic Error, an RDMAP Invalid Version or
     * Unexpected Opcode and a DDP Invalid Version (the layout is unknown); a Remote Protection Error the whole
     * Read Request, or a SEND's header; any other error of the DDP or RDMAP layer the DDP header, tagged or not as
     * its T flag says.
     */
    private int copied(boolean taggedFlag, int opcode) {
        return switch (layer) {
            case LAYER_RDMAP -> switch (etype) {
                case RDMAP_LOCAL_CATASTROPHIC -> 0;
                case RDMAP_REMOTE_PROTECTION -> opcode == Iwarp.OP_READ_REQUEST ? COPY_READ_REQUEST : COPY_UNTAGGED;
                default -> ecode == RDMAP_INVALID_VERSION || ecode == RDMAP_UNEXPECTED_OPCODE ? 0
                        : taggedFlag ? COPY_TAGGED : COPY_UNTAGGED;
            };
            case LAYER_DDP -> (etype == DDP_TAGGED_BUFFER && ecode == DDP_T_INVALID_VERSION)
                    || (etype == DDP_UNTAGGED_BUFFER && ecode == DDP_UT_INVALID_VERSION) ? 0
                    : taggedFlag ? COPY_TAGGED : COPY_UNTAGGED;
            default -> 0;
        };
    }

    /**
     * This TERMINATE with the headers of the inbound FPDU at {@code at} of {@code in} copied as
     * {@code siw_send_terminate} takes them from {@code srx->hdr}: the bytes from the MPA length on, as many as
     * {@link #copied} says (those beyond the headers the segment's opcode has are zero: siw's header buffer holds
     * nothing of this segment there), then the MPA length replaced by the DDP Segment Length siw reports, the
     * ULPDU's length less the headers of its opcode ({@code iwarp_pktinfo[op].hdr_len - MPA_HDR_SIZE}), in 16 bits.
     * Only called on an error: the receive path allocates nothing per good segment.
     */
    Terminate copying(ByteBuffer in, int at) {
        int ulpdu = in.getShort(at) & 0xffff;
        int op = in.get(at + 3) & 0x0f;
        int n = copied((in.get(at + 2) & Iwarp.DDP_TAGGED) != 0, op);
        if (n == 0) {
            return this;
        }
        byte[] h = new byte[n];
        in.get(at, h, 0, Math.min(n, Math.min(2 + ulpdu, 2 + Iwarp.headerLength(op))));
        int ddpLength = ulpdu - Iwarp.headerLength(op);
        h[0] = (byte) (ddpLength >>> 8);
        h[1] = (byte) ddpLength;
        return new Terminate(layer, etype, ecode, h);
    }

    /**
     * This TERMINATE (a Remote Protection Error found while a Read Response was built, {@code in_tx}) with the Read
     * Request rebuilt from the response as {@code siw_send_terminate} rebuilds it: the control bytes of a Read
     * Request, queue 1, the DDP Segment Length its MPA length gives (0), the MSN field holding what siw puts there
     * ({@code wqe->sqe.sge[0].length}, the read size, where its comment promises the request's MSN), the message
     * offset the bytes already sent ({@code wqe->processed}), then sink, size and source as the request named them.
     */
    Terminate copyingReadRequest(ReadResponse r, long processed) {
        ByteBuffer b = ByteBuffer.allocate(COPY_READ_REQUEST);
        b.putShort((short) 0);
        Iwarp.untagged(b, Iwarp.OP_READ_REQUEST, true, 0, Iwarp.QN_READ_REQUEST, r.length(), (int) processed);
        Iwarp.readRequest(b, r.sinkStag(), r.sinkTo(), r.length(), r.srcStag(), r.srcTo());
        return new Terminate(layer, etype, ecode, b.array());
    }

    static Terminate of(int word) {
        return new Terminate(word >>> 28, (word >>> 24) & 0xf, (word >>> 16) & 0xff);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Terminate t && t.layer == layer && t.etype == etype && t.ecode == ecode
                && Arrays.equals(t.failed, failed);
    }

    @Override
    public int hashCode() {
        return ((layer * 31 + etype) * 31 + ecode) * 31 + Arrays.hashCode(failed);
    }

    @Override
    public String toString() {
        return "TERMINATE layer " + layer + " type " + etype + " code 0x" + Integer.toHexString(ecode);
    }
}
