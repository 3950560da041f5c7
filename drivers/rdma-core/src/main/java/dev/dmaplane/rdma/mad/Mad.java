package dev.dmaplane.rdma.mad;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * A management datagram ({@code struct ib_mad}): the common MAD header (IBTA 13.4.3, {@code struct ib_mad_hdr}) and
 * {@value #DATA} bytes of class data, {@value #SIZE} bytes on the wire in network byte order.
 *
 * @param baseVersion   {@value #BASE_VERSION} for every IBTA MAD
 * @param mgmtClass     management class ({@value #CLASS_CM} for the communication manager)
 * @param classVersion  version of the class ({@value #CM_CLASS_VERSION} for the CM)
 * @param method        method; bit 0x80 marks a response
 * @param status        status field
 * @param classSpecific class-specific field
 * @param tid           transaction ID; a response's upper 32 bits name the agent it goes to
 * @param attrId        attribute ID (the CM message type)
 * @param attrMod       attribute modifier
 * @param data          the {@value #DATA} bytes after the header
 */
public record Mad(int baseVersion, int mgmtClass, int classVersion, int method, int status, int classSpecific,
                  long tid, int attrId, int attrMod, byte[] data) {
    /** Bytes of a MAD on the wire ({@code IB_MGMT_MAD_SIZE}). */
    public static final int SIZE = 256;
    /** Bytes of the common header ({@code IB_MGMT_MAD_HDR}). */
    public static final int HEADER = 24;
    /** Bytes of class data ({@code IB_MGMT_MAD_DATA}). */
    public static final int DATA = SIZE - HEADER;
    /** {@code IB_MGMT_BASE_VERSION}. */
    public static final int BASE_VERSION = 1;
    /** {@code IB_MGMT_CLASS_CM}. */
    public static final int CLASS_CM = 0x07;
    /** {@code IB_CM_CLASS_VERSION}. */
    public static final int CM_CLASS_VERSION = 2;
    /** {@code IB_MGMT_METHOD_GET}. */
    public static final int METHOD_GET = 0x01;
    /** {@code IB_MGMT_METHOD_SET}. */
    public static final int METHOD_SET = 0x02;
    /** {@code IB_MGMT_METHOD_SEND}: how every CM message travels. */
    public static final int METHOD_SEND = 0x03;
    /** {@code IB_MGMT_METHOD_RESP}: the response bit. */
    public static final int METHOD_RESP = 0x80;
    /** {@code IB_MGMT_METHOD_GET_RESP}. */
    public static final int METHOD_GET_RESP = 0x81;
    /** {@code IB_MGMT_MAD_STATUS_UNSUPPORTED_METHOD_ATTRIB}: the status of an answer no agent gave. */
    public static final int STATUS_UNSUPPORTED_METHOD_ATTRIB = 0x000C;

    public Mad {
        if (data == null || data.length != DATA) {
            throw new ErrnoException(Errno.EINVAL, "MAD data of " + (data == null ? "no" : data.length)
                    + " bytes, not " + DATA);
        }
        checkField("base version", baseVersion, 0xFF);
        checkField("management class", mgmtClass, 0xFF);
        checkField("class version", classVersion, 0xFF);
        checkField("method", method, 0xFF);
        checkField("status", status, 0xFFFF);
        checkField("class specific", classSpecific, 0xFFFF);
        checkField("attribute ID", attrId, 0xFFFF);
        data = data.clone();
    }

    private static void checkField(String what, int v, int max) {
        if (v < 0 || v > max) {
            throw new ErrnoException(Errno.EINVAL, "MAD " + what + " " + v + " outside 0.." + max);
        }
    }

    /** A MAD of this class and method with the given transaction, attribute and data. */
    public static Mad of(int mgmtClass, int classVersion, int method, long tid, int attrId, byte[] data) {
        return new Mad(BASE_VERSION, mgmtClass, classVersion, method, 0, 0, tid, attrId, 0, data);
    }

    /** Whether the method is a response ({@code ib_response_mad}). */
    public boolean isResponse() {
        return (method & METHOD_RESP) != 0;
    }

    @Override
    public byte[] data() {
        return data.clone();
    }

    /** The {@value #SIZE} bytes on the wire. */
    public byte[] encode() {
        ByteBuffer b = ByteBuffer.allocate(SIZE);
        b.put((byte) baseVersion).put((byte) mgmtClass).put((byte) classVersion).put((byte) method);
        b.putShort((short) status).putShort((short) classSpecific).putLong(tid).putShort((short) attrId)
                .putShort((short) 0).putInt(attrMod).put(data);
        return b.array();
    }

    /**
     * A MAD read from {@code raw}.
     *
     * @throws ErrnoException {@code EINVAL} when {@code raw} does not hold {@value #SIZE} bytes
     */
    public static Mad decode(byte[] raw) {
        if (raw == null || raw.length != SIZE) {
            throw new ErrnoException(Errno.EINVAL, "a MAD has " + SIZE + " bytes, not "
                    + (raw == null ? "none" : raw.length));
        }
        ByteBuffer b = ByteBuffer.wrap(raw);
        int base = b.get() & 0xFF;
        int cls = b.get() & 0xFF;
        int ver = b.get() & 0xFF;
        int method = b.get() & 0xFF;
        int status = b.getShort() & 0xFFFF;
        int specific = b.getShort() & 0xFFFF;
        long tid = b.getLong();
        int attr = b.getShort() & 0xFFFF;
        b.getShort();
        int mod = b.getInt();
        return new Mad(base, cls, ver, method, status, specific, tid, attr, mod, Arrays.copyOfRange(raw, HEADER, SIZE));
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Mad m && Arrays.equals(encode(), m.encode());
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(encode());
    }

    @Override
    public String toString() {
        return String.format("MAD class 0x%02x v%d method 0x%02x status 0x%04x tid 0x%016x attr 0x%04x", mgmtClass,
                classVersion, method, status, tid, attrId);
    }
}
