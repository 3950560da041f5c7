package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.verbs.Gid;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * One RoCEv2 packet on the fabric (IP/UDP 4791 addressed by GID), or a train of {@code count} consecutive packets
 * handed to the fabric at once (as a NIC's segmentation offload hands a burst to the wire): PSNs
 * {@code psn .. psn + count - 1}. A train is the packets of one message, {@code first} when it starts the message,
 * {@code last} when it ends it; or, with a {@link Payload.Messages} payload, {@code count} whole single-packet
 * RDMA WRITE messages (WRITE_ONLY), each with its own RETH in the payload.
 * It carries the base transport header (opcode, destination QP, PSN, AckReq), the extension headers the opcode
 * carries (RETH: {@code va}/{@code rkey}/{@code dmaLen}; AtomicETH: {@code va}/{@code rkey}/{@code swapAdd}/
 * {@code compare}; ImmDt/IETH: {@code imm}; AETH: {@code syndrome}/{@code msn}; AtomicAckETH: {@code orig};
 * DETH: {@code qkey}/{@code srcQpn}), the BTH's solicited event bit {@code se} and the payload. The in-process
 * fabric hands packets over as these objects; {@link WireCodec} makes them bytes (with the P_Key and the ICRC) for
 * the UDP transport and captures.
 */
record Packet(Gid sgid, Gid dgid, int srcQpn, int destQpn, Op op, boolean first, boolean last, int psn, int count,
              boolean ackReq, long va, int rkey, long dmaLen, int imm, long swapAdd, long compare, int syndrome,
              int msn, long orig, int qkey, Payload payload, boolean se) {

    /** A single packet without payload (acknowledgements, read requests, atomics). */
    static Packet control(Gid sgid, Gid dgid, int srcQpn, int destQpn, Op op, int psn, boolean ackReq, long va,
                          int rkey, long dmaLen, long swapAdd, long compare, int syndrome, int msn, long orig) {
        return new Packet(sgid, dgid, srcQpn, destQpn, op, true, true, psn, 1, ackReq, va, rkey, dmaLen, 0, swapAdd,
                compare, syndrome, msn, orig, 0, Payload.NONE, false);
    }

    /** This packet with {@code srcQpn} as its source QP (the receiver's QP context knows it for RC and UC). */
    Packet withSrcQpn(int qpn) {
        return new Packet(sgid, dgid, qpn, destQpn, op, first, last, psn, count, ackReq, va, rkey, dmaLen, imm, swapAdd,
                compare, syndrome, msn, orig, qkey, payload, se);
    }

    /** PSN of the train's last packet. */
    int lastPsn() {
        return psnAdd(psn, count - 1);
    }

    /**
     * This train without its first {@code k} packets of {@code mtu} bytes (a duplicate prefix the responder has
     * already taken).
     */
    Packet dropFront(int k, int mtu) {
        if (payload instanceof Payload.Messages m) {
            Payload.Messages rest = m.dropFirst(k);
            return new Packet(sgid, dgid, srcQpn, destQpn, op, true, true, psnAdd(psn, k), count - k, ackReq,
                    rest.vas()[0], rkey, rest.lengths()[0], imm, swapAdd, compare, syndrome, msn, orig, qkey, rest, se);
        }
        long from = Math.min(payload.length(), (long) k * mtu);
        return new Packet(sgid, dgid, srcQpn, destQpn, op, false, last, psnAdd(psn, k), count - k, ackReq, va, rkey,
                dmaLen, imm, swapAdd, compare, syndrome, msn, orig, qkey,
                payload.slice(from, payload.length() - from), se);
    }

    /** This packet with its payload copied off the sender (store-and-forward). */
    Packet materialized() {
        if (!payload.leased()) {
            return this;
        }
        return new Packet(sgid, dgid, srcQpn, destQpn, op, first, last, psn, count, ackReq, va, rkey, dmaLen, imm,
                swapAdd, compare, syndrome, msn, orig, qkey, payload.materialize(), se);
    }

    /** Opcode families of {@code rxe_opcode.c}; {@code first}/{@code last} give FIRST/MIDDLE/LAST/ONLY. */
    enum Op {
        SEND, SEND_IMM, SEND_INV, WRITE, WRITE_IMM, READ_REQ, CMP_SWAP, FETCH_ADD,
        READ_RESP, ACK, ATOMIC_ACK, UD_SEND, UD_SEND_IMM;

        boolean isResponse() {
            return this == READ_RESP || this == ACK || this == ATOMIC_ACK;
        }
    }

    /**
     * A packet's payload: bytes already on the wire ({@link Bytes}), or a range the sending HCA fetches from its
     * memory while the receiving one stores it ({@link Span}: cut-through, valid only during the fabric's delivery
     * call; the fabric {@link #materialize materializes} it before queueing the packet).
     */
    sealed interface Payload {
        Payload NONE = new Bytes(MemorySegment.ofArray(new byte[0]));

        long length();

        /** The receiving HCA writes {@code [from, from + len)} of the payload at {@code offset} of {@code dst}. */
        void writeTo(long from, DmaLease dst, long offset, long len);

        /** Copies {@code [from, from + dst.byteSize())} of the payload into {@code dst} (the HCA's own buffer). */
        void copyTo(long from, MemorySegment dst);

        Payload slice(long from, long len);

        /** This payload with its bytes copied off the sender's lease (itself when it holds none). */
        Payload materialize();

        /** Whether the bytes are still in the sender's lease (valid only during the delivery call). */
        default boolean leased() {
            return false;
        }

        /** Payload bytes held in one segment: how they are read. */
        sealed interface InSegment extends Payload {
            MemorySegment data();

            @Override
            default long length() {
                return data().byteSize();
            }

            @Override
            default void writeTo(long from, DmaLease dst, long offset, long len) {
                MemorySegment d = data();
                dst.write(offset, from == 0 && len == d.byteSize() ? d : d.asSlice(from, len));
            }

            @Override
            default void copyTo(long from, MemorySegment dst) {
                MemorySegment.copy(data(), from, dst, 0, dst.byteSize());
            }
        }

        /** Payload bytes: the sender's copy, which nobody writes once the packet left. */
        record Bytes(MemorySegment data) implements InSegment {
            static Bytes of(byte[] b) {
                return new Bytes(MemorySegment.ofArray(b));
            }

            @Override
            public Payload slice(long from, long len) {
                return new Bytes(data.asSlice(from, len));
            }

            @Override
            public Payload materialize() {
                return this;
            }
        }

        /**
         * Payload bytes in a receive buffer of the UDP transport ({@code rxe_rcv} works on the skb it received):
         * valid only during the transport's delivery call, copied off by {@link #materialize} when the packet waits.
         */
        record Received(MemorySegment data) implements InSegment {
            @Override
            public Payload slice(long from, long len) {
                return new Received(data.asSlice(from, len));
            }

            @Override
            public Payload materialize() {
                return Bytes.of(data.toArray(ValueLayout.JAVA_BYTE));
            }

            @Override
            public boolean leased() {
                return true;
            }
        }

        /** {@code length} bytes at {@code offset} of the sender's open lease. */
        record Span(DmaLease lease, long offset, long length) implements Payload {
            @Override
            public void writeTo(long from, DmaLease dst, long off, long len) {
                lease.copyTo(offset + from, dst, off, len);
            }

            @Override
            public void copyTo(long from, MemorySegment dst) {
                lease.read(offset + from, dst);
            }

            @Override
            public Payload slice(long from, long len) {
                return new Span(lease, offset + from, len);
            }

            @Override
            public Payload materialize() {
                byte[] b = new byte[(int) length];
                lease.read(offset, MemorySegment.ofArray(b));
                return Bytes.of(b);
            }

            @Override
            public boolean leased() {
                return true;
            }
        }

        /**
         * The payloads of a train of {@code count} single-packet WRITE messages, message {@code i} writing
         * {@code lengths[i]} bytes at remote address {@code vas[i]} (its RETH; the rkey is the packet's), which all
         * lie in {@code [lo, hi)}. The bytes of message {@code i} are at {@code offsets[i]} of the sender's open
         * lease {@code leases[i]} (cut-through; consecutive messages often share one) or, once stored, of
         * {@code bytes} (and {@code leases} is null); as a whole, the payload is the messages' payloads back to
         * back, as their packets follow each other on the wire.
         */
        record Messages(int count, long[] vas, int[] lengths, long[] offsets, DmaLease[] leases, MemorySegment bytes,
                        long lo, long hi, long length) implements Payload {
            /** A train of the first {@code count} entries of the arrays, from {@code leases}. */
            static Messages of(int count, long[] vas, int[] lengths, long[] offsets, DmaLease[] leases) {
                long lo = Long.MAX_VALUE;
                long hi = Long.MIN_VALUE;
                long total = 0;
                for (int i = 0; i < count; i++) {
                    lo = Math.min(lo, vas[i]);
                    hi = Math.max(hi, vas[i] + lengths[i]);
                    total += lengths[i];
                }
                return new Messages(count, vas, lengths, offsets, leases, null, lo, hi, total);
            }

            /** The train without its first {@code k} messages. */
            Messages dropFirst(int k) {
                if (k <= 0 || k >= count) {
                    throw new IllegalArgumentException("dropping " + k + " of " + count + " messages");
                }
                int n = count - k;
                long[] v = Arrays.copyOfRange(vas, k, count);
                int[] l = Arrays.copyOfRange(lengths, k, count);
                long[] o = Arrays.copyOfRange(offsets, k, count);
                Messages m = of(n, v, l, o, leases == null ? null : Arrays.copyOfRange(leases, k, count));
                return bytes == null ? m : new Messages(n, v, l, o, null, bytes, m.lo, m.hi, m.length);
            }

            /** Message {@code i}'s payload alone. */
            Payload message(int i) {
                return leases != null ? new Span(leases[i], offsets[i], lengths[i])
                        : new Bytes(bytes.asSlice(offsets[i], lengths[i]));
            }

            /** Applies {@code part} to the pieces of messages covering {@code [from, from + len)} of the whole. */
            private void walk(long from, long len, Piece part) {
                long pos = 0;
                long done = 0;
                for (int i = 0; i < count && done < len; i++) {
                    long end = pos + lengths[i];
                    if (from + done < end) {
                        long inner = from + done - pos;
                        long n = Math.min(len - done, lengths[i] - inner);
                        part.move(i, inner, done, n);
                        done += n;
                    }
                    pos = end;
                }
            }

            private interface Piece {
                void move(int message, long inner, long done, long n);
            }

            @Override
            public void writeTo(long from, DmaLease dst, long offset, long len) {
                walk(from, len, (i, inner, done, n) -> message(i).writeTo(inner, dst, offset + done, n));
            }

            @Override
            public void copyTo(long from, MemorySegment dst) {
                walk(from, dst.byteSize(), (i, inner, done, n) -> message(i).copyTo(inner, dst.asSlice(done, n)));
            }

            @Override
            public Payload slice(long from, long len) {
                byte[] b = new byte[(int) len];
                copyTo(from, MemorySegment.ofArray(b));
                return Bytes.of(b);
            }

            @Override
            public Payload materialize() {
                if (leases == null) {
                    return this;
                }
                byte[] b = new byte[(int) length];
                long[] at = new long[count];
                for (int i = 0, pos = 0; i < count; pos += lengths[i], i++) {
                    at[i] = pos;
                }
                copyTo(0, MemorySegment.ofArray(b));
                return new Messages(count, vas, lengths, at, null, MemorySegment.ofArray(b), lo, hi, length);
            }

            @Override
            public boolean leased() {
                return leases != null;
            }
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

    /**
     * Packets of a message of {@code len} bytes at path MTU {@code mtu} (a power of two, 256..4096): at least one.
     * A shift, not a division: this runs once per message.
     */
    static int packetsFor(long len, int mtu) {
        return (int) Math.max(1, (len + mtu - 1) >>> Integer.numberOfTrailingZeros(mtu));
    }

    static int psnAdd(int psn, int n) {
        return (psn + n) & PSN_MASK;
    }

    /** Signed 24-bit PSN distance {@code a - b}. */
    static int psnDiff(int a, int b) {
        return ((a - b) << 8) >> 8;
    }
}
