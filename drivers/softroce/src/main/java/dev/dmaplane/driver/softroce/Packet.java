package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.Gid;

import java.lang.foreign.MemorySegment;

/**
 * One RoCEv2 packet on the fabric (IP/UDP 4791 addressed by GID): the base transport header (opcode, destination
 * QP, PSN, AckReq), the extension headers the opcode carries (RETH: {@code va}/{@code rkey}/{@code dmaLen};
 * AtomicETH: {@code va}/{@code rkey}/{@code swapAdd}/{@code compare}; ImmDt/IETH: {@code imm}; AETH:
 * {@code syndrome}/{@code msn}; AtomicAckETH: {@code orig}; DETH: {@code qkey}/{@code srcQpn}) and the payload
 * bytes (a read-only view: messages are sliced, not copied, into packets), and the BTH's solicited event bit {@code se}. The ICRC is not modelled: the fabric does not corrupt packets.
 */
record Packet(Gid sgid, Gid dgid, int srcQpn, int destQpn, Op op, boolean first, boolean last, int psn,
              boolean ackReq, long va, int rkey, long dmaLen, int imm, long swapAdd, long compare, int syndrome,
              int msn, long orig, int qkey, MemorySegment payload, boolean se) {

    /** A packet without the solicited event bit. */
    Packet(Gid sgid, Gid dgid, int srcQpn, int destQpn, Op op, boolean first, boolean last, int psn, boolean ackReq,
           long va, int rkey, long dmaLen, int imm, long swapAdd, long compare, int syndrome, int msn, long orig,
           int qkey, MemorySegment payload) {
        this(sgid, dgid, srcQpn, destQpn, op, first, last, psn, ackReq, va, rkey, dmaLen, imm, swapAdd, compare,
                syndrome, msn, orig, qkey, payload, false);
    }

    /** Opcode families of {@code rxe_opcode.c}; {@code first}/{@code last} give FIRST/MIDDLE/LAST/ONLY. */
    enum Op {
        SEND, SEND_IMM, SEND_INV, WRITE, WRITE_IMM, READ_REQ, CMP_SWAP, FETCH_ADD,
        READ_RESP, ACK, ATOMIC_ACK, UD_SEND, UD_SEND_IMM;

        boolean isResponse() {
            return this == READ_RESP || this == ACK || this == ATOMIC_ACK;
        }
    }

    /** AETH syndromes (IBTA 9.7.5.1.1): ACK, RNR NAK (with the timer in the low 5 bits), NAK codes. */
    static final int AETH_ACK = 0x00;
    static final int AETH_RNR = 0x20;
    static final int AETH_NAK_PSN_SEQ = 0x60;
    static final int AETH_NAK_INV_REQ = 0x61;
    static final int AETH_NAK_REM_ACCESS = 0x62;
    static final int AETH_NAK_REM_OP = 0x63;

    static final int PSN_MASK = 0xFFFFFF;

    static int psnAdd(int psn, int n) {
        return (psn + n) & PSN_MASK;
    }

    /** Signed 24-bit PSN distance {@code a - b}. */
    static int psnDiff(int a, int b) {
        return ((a - b) << 8) >> 8;
    }

    static final MemorySegment EMPTY = MemorySegment.ofArray(new byte[0]);
}
