package dev.dmaplane.driver.softroce;

import dev.dmaplane.driver.softroce.Packet.Op;

/**
 * The BTH opcodes the driver sends and accepts, with the extension headers each carries and whether it carries a
 * payload: {@code rxe_opcode.c}'s {@code rxe_opcode[]} table (IBTA 9.2: the top three bits name the transport
 * service, RC {@code 0x00}, UC {@code 0x20}, UD {@code 0x60}). {@link Packet.Op} with {@code first}/{@code last}
 * names the message's operation; the opcode names the packet's, so the first and middle packets of a SEND or
 * RDMA WRITE with immediate are plain SEND and RDMA WRITE packets.
 */
enum Opcode {
    RC_SEND_FIRST(0x00, Op.SEND, true, false, 0, true),
    RC_SEND_MIDDLE(0x01, Op.SEND, false, false, 0, true),
    RC_SEND_LAST(0x02, Op.SEND, false, true, 0, true),
    RC_SEND_LAST_IMM(0x03, Op.SEND_IMM, false, true, Opcode.IMM, true),
    RC_SEND_ONLY(0x04, Op.SEND, true, true, 0, true),
    RC_SEND_ONLY_IMM(0x05, Op.SEND_IMM, true, true, Opcode.IMM, true),
    RC_WRITE_FIRST(0x06, Op.WRITE, true, false, Opcode.RETH, true),
    RC_WRITE_MIDDLE(0x07, Op.WRITE, false, false, 0, true),
    RC_WRITE_LAST(0x08, Op.WRITE, false, true, 0, true),
    RC_WRITE_LAST_IMM(0x09, Op.WRITE_IMM, false, true, Opcode.IMM, true),
    RC_WRITE_ONLY(0x0a, Op.WRITE, true, true, Opcode.RETH, true),
    RC_WRITE_ONLY_IMM(0x0b, Op.WRITE_IMM, true, true, Opcode.RETH | Opcode.IMM, true),
    RC_READ_REQUEST(0x0c, Op.READ_REQ, true, true, Opcode.RETH, false),
    RC_READ_RESPONSE_FIRST(0x0d, Op.READ_RESP, true, false, Opcode.AETH, true),
    RC_READ_RESPONSE_MIDDLE(0x0e, Op.READ_RESP, false, false, 0, true),
    RC_READ_RESPONSE_LAST(0x0f, Op.READ_RESP, false, true, Opcode.AETH, true),
    RC_READ_RESPONSE_ONLY(0x10, Op.READ_RESP, true, true, Opcode.AETH, true),
    RC_ACKNOWLEDGE(0x11, Op.ACK, true, true, Opcode.AETH, false),
    RC_ATOMIC_ACKNOWLEDGE(0x12, Op.ATOMIC_ACK, true, true, Opcode.AETH | Opcode.ATMACK, false),
    RC_COMPARE_SWAP(0x13, Op.CMP_SWAP, true, true, Opcode.ATMETH, false),
    RC_FETCH_ADD(0x14, Op.FETCH_ADD, true, true, Opcode.ATMETH, false),
    RC_SEND_LAST_INV(0x16, Op.SEND_INV, false, true, Opcode.IETH, true),
    RC_SEND_ONLY_INV(0x17, Op.SEND_INV, true, true, Opcode.IETH, true),
    UC_SEND_FIRST(0x20, Op.SEND, true, false, 0, true),
    UC_SEND_MIDDLE(0x21, Op.SEND, false, false, 0, true),
    UC_SEND_LAST(0x22, Op.SEND, false, true, 0, true),
    UC_SEND_LAST_IMM(0x23, Op.SEND_IMM, false, true, Opcode.IMM, true),
    UC_SEND_ONLY(0x24, Op.SEND, true, true, 0, true),
    UC_SEND_ONLY_IMM(0x25, Op.SEND_IMM, true, true, Opcode.IMM, true),
    UC_WRITE_FIRST(0x26, Op.WRITE, true, false, Opcode.RETH, true),
    UC_WRITE_MIDDLE(0x27, Op.WRITE, false, false, 0, true),
    UC_WRITE_LAST(0x28, Op.WRITE, false, true, 0, true),
    UC_WRITE_LAST_IMM(0x29, Op.WRITE_IMM, false, true, Opcode.IMM, true),
    UC_WRITE_ONLY(0x2a, Op.WRITE, true, true, Opcode.RETH, true),
    UC_WRITE_ONLY_IMM(0x2b, Op.WRITE_IMM, true, true, Opcode.RETH | Opcode.IMM, true),
    UD_SEND_ONLY(0x64, Op.UD_SEND, true, true, Opcode.DETH, true),
    UD_SEND_ONLY_IMM(0x65, Op.UD_SEND_IMM, true, true, Opcode.DETH | Opcode.IMM, true);

    /** Extension header bits, in the order the headers follow the BTH ({@code rxe_hdr.h}). */
    static final int RETH = 1;
    static final int AETH = 2;
    static final int ATMETH = 4;
    static final int ATMACK = 8;
    static final int IMM = 16;
    static final int IETH = 32;
    static final int DETH = 64;

    private static final Opcode[] BY_CODE = new Opcode[256];

    static {
        for (Opcode o : values()) {
            BY_CODE[o.code] = o;
        }
    }

    final int code;
    final Op op;
    final boolean first;
    final boolean last;
    final int headers;
    final boolean payload;

    Opcode(int code, Op op, boolean first, boolean last, int headers, boolean payload) {
        this.code = code;
        this.op = op;
        this.first = first;
        this.last = last;
        this.headers = headers;
        this.payload = payload;
    }

    /** The transport service of the opcode's top three bits. */
    Service service() {
        return switch (code >>> 5) {
            case 0 -> Service.RC;
            case 1 -> Service.UC;
            default -> Service.UD;
        };
    }

    boolean has(int header) {
        return (headers & header) != 0;
    }

    /** Bytes of the extension headers after the BTH. */
    int extLength() {
        return (has(RETH) ? 16 : 0) + (has(AETH) ? 4 : 0) + (has(ATMETH) ? 28 : 0) + (has(ATMACK) ? 8 : 0)
                + (has(IMM) ? 4 : 0) + (has(IETH) ? 4 : 0) + (has(DETH) ? 8 : 0);
    }

    /** The opcode of {@code code}, or null for one the driver does not know. */
    static Opcode of(int code) {
        return BY_CODE[code & 0xff];
    }

    /**
     * The opcode of a packet of {@code op} on {@code service}, {@code first}/{@code last} in its message: the
     * immediate or invalidate key rides on the last packet only.
     */
    static Opcode of(Service service, Op op, boolean first, boolean last) {
        Opcode o = BY_PACKET[index(service, op, first, last)];
        if (o == null) {
            throw new IllegalArgumentException("no " + service + " opcode for " + op + (first ? " first" : "")
                    + (last ? " last" : ""));
        }
        return o;
    }

    private static final int OPS = Op.values().length;
    private static final Opcode[] BY_PACKET = new Opcode[Service.values().length * OPS * 4];

    static {
        for (Service s : Service.values()) {
            for (Op op : Op.values()) {
                for (int fl = 0; fl < 4; fl++) {
                    BY_PACKET[index(s, op, (fl & 2) != 0, (fl & 1) != 0)] = find(s, op, (fl & 2) != 0, (fl & 1) != 0);
                }
            }
        }
    }

    private static int index(Service s, Op op, boolean first, boolean last) {
        return ((s.ordinal() * OPS + op.ordinal()) * 2 + (first ? 1 : 0)) * 2 + (last ? 1 : 0);
    }

    private static Opcode find(Service service, Op op, boolean first, boolean last) {
        Op base = last ? op : switch (op) {
            case SEND_IMM, SEND_INV -> Op.SEND;
            case WRITE_IMM -> Op.WRITE;
            default -> op;
        };
        boolean anyPosition = base == Op.READ_REQ || base == Op.ACK || base == Op.ATOMIC_ACK || base == Op.CMP_SWAP
                || base == Op.FETCH_ADD || base == Op.UD_SEND || base == Op.UD_SEND_IMM;
        for (Opcode o : values()) {
            if (o.service() == service && o.op == base && (anyPosition || (o.first == first && o.last == last))) {
                return o;
            }
        }
        return null;
    }

    /** IBTA transport services. */
    enum Service {
        RC, UC, UD
    }
}
