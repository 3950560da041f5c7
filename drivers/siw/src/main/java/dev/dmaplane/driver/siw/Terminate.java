package dev.dmaplane.driver.siw;

import java.nio.ByteBuffer;

/**
 * A TERMINATE message's control word (RFC 5040, section 4.8; {@code siw_init_terminate}): the layer that found the
 * error (RDMAP 0, DDP 1, LLP/MPA 2), its error type and code, as RFC 5040 section 7 and RFC 5041 section 7 number
 * them.
 *
 * @param layer layer
 * @param etype error type within the layer
 * @param ecode error code within the type
 */
record Terminate(int layer, int etype, int ecode) {
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

    /** The control word as sent: layer and type, code, then the header-control bits (none) and reserved bits. */
    int word() {
        return (layer & 0xf) << 28 | (etype & 0xf) << 24 | (ecode & 0xff) << 16;
    }

    /**
     * {@code siw_send_terminate} for an error that names no failed frame (the LLP layer's, or a Local Catastrophic
     * Error of the RDMAP layer, for which {@code siw_send_terminate} attaches no header): untagged, queue 2, MSN 1
     * (siw numbers every TERMINATE 1, the first and only one of its queue), the control word, a CRC32C.
     */
    byte[] fpdu() {
        int ulpdu = Iwarp.UNTAGGED_HDR + Iwarp.TERMINATE_BODY;
        byte[] f = new byte[Mpa.fpduLength(ulpdu)];
        ByteBuffer b = ByteBuffer.wrap(f, 2, ulpdu);
        Iwarp.untagged(b, Iwarp.OP_TERMINATE, true, 0, Iwarp.QN_TERMINATE, 1, 0);
        b.putInt(word());
        Mpa.seal(ByteBuffer.wrap(f), 0, ulpdu);
        return f;
    }

    static Terminate of(int word) {
        return new Terminate(word >>> 28, (word >>> 24) & 0xf, (word >>> 16) & 0xff);
    }

    @Override
    public String toString() {
        return "TERMINATE layer " + layer + " type " + etype + " code 0x" + Integer.toHexString(ecode);
    }
}
