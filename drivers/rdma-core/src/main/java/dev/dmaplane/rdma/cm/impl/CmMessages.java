package dev.dmaplane.rdma.cm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.mad.Mad;
import dev.dmaplane.rdma.verbs.Gid;

import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * The IB CM messages as {@code cm_msgs.h} and IBTA 12.6 lay them out in the 232 data bytes of a CM MAD (class 0x07,
 * version 2, method SEND): REQ, MRA, REJ, REP, RTU, DREQ, DREP, with their private data sizes
 * ({@code enum ib_cm_data_size}). Connected-mode fields only: the alternate path stays zero, as RoCE has none.
 */
final class CmMessages {
    static final int ATTR_REQ = 0x0010;
    static final int ATTR_MRA = 0x0011;
    static final int ATTR_REJ = 0x0012;
    static final int ATTR_REP = 0x0013;
    static final int ATTR_RTU = 0x0014;
    static final int ATTR_DREQ = 0x0015;
    static final int ATTR_DREP = 0x0016;

    static final int REQ_PRIVATE = 92;
    static final int REP_PRIVATE = 196;
    static final int REJ_PRIVATE = 148;
    static final int RTU_PRIVATE = 224;
    static final int DREQ_PRIVATE = 220;
    static final int DREP_PRIVATE = 224;
    static final int MRA_PRIVATE = 222;

    /** REJ's "message rejected" field. */
    static final int REJ_MSG_REQ = 0;
    static final int REJ_MSG_REP = 1;
    static final int REJ_MSG_OTHER = 2;

    private CmMessages() {
    }

    /** The private data, refused when over {@code max} bytes ({@code ib_send_cm_*}: {@code -EINVAL}). */
    static byte[] checkPrivate(String msg, byte[] data, int max) {
        byte[] d = data == null ? new byte[0] : data;
        if (d.length > max) {
            throw new ErrnoException(Errno.EINVAL, msg + " private data of " + d.length + " bytes, over " + max);
        }
        return d;
    }

    private static byte[] body(byte[] fixed, int privAt, byte[] priv) {
        byte[] b = Arrays.copyOf(fixed, Mad.DATA);
        System.arraycopy(priv, 0, b, privAt, priv.length);
        return b;
    }

    static Mad mad(long tid, int attr, byte[] data) {
        return Mad.of(Mad.CLASS_CM, Mad.CM_CLASS_VERSION, Mad.METHOD_SEND, tid, attr, data);
    }

    /** {@code struct cm_req_msg}. */
    record Req(int localCommId, long serviceId, long localCaGuid, int localQkey, int localQpn, int responderResources,
               int initiatorDepth, int remoteCmResponseTimeout, int transportType, int flowControl, int startingPsn,
               int localCmResponseTimeout, int retryCount, int pkey, int pathMtu, int rnrRetryCount,
               int maxCmRetries, boolean srq, Gid localGid, Gid remoteGid, int flowLabel, int packetRate,
               int trafficClass, int hopLimit, int sl, boolean subnetLocal, int localAckTimeout, byte[] priv) {
        Mad toMad(long tid) {
            ByteBuffer b = ByteBuffer.allocate(140);
            b.putInt(localCommId).putInt(0).putLong(serviceId).putLong(localCaGuid).putInt(0).putInt(localQkey);
            b.putInt(localQpn << 8 | responderResources);
            b.putInt(initiatorDepth); // local EECN 0
            b.putInt(remoteCmResponseTimeout << 3 | transportType << 1 | flowControl); // remote EECN 0
            b.putInt(startingPsn << 8 | localCmResponseTimeout << 3 | retryCount);
            b.putShort((short) pkey);
            b.put((byte) (pathMtu << 4 | rnrRetryCount)); // RDC exists 0
            b.put((byte) (maxCmRetries << 4 | (srq ? 8 : 0))); // extended transport 0
            b.putShort((short) 0xFFFF).putShort((short) 0xFFFF); // RoCE: the permissive LID at both ends
            b.put(localGid.raw()).put(remoteGid.raw());
            b.putInt(flowLabel << 12 | packetRate);
            b.put((byte) trafficClass).put((byte) hopLimit);
            b.put((byte) (sl << 4 | (subnetLocal ? 8 : 0)));
            b.put((byte) (localAckTimeout << 3));
            return mad(tid, ATTR_REQ, body(b.array(), 140, priv));
        }

        static Req of(Mad m) {
            ByteBuffer b = ByteBuffer.wrap(m.data());
            int commId = b.getInt();
            b.getInt();
            long sid = b.getLong();
            long guid = b.getLong();
            b.getInt();
            int qkey = b.getInt();
            int w = b.getInt();
            int qpn = w >>> 8;
            int rr = w & 0xFF;
            int id = b.getInt() & 0xFF;
            w = b.getInt();
            int rcrt = (w >>> 3) & 0x1F;
            int tt = (w >>> 1) & 3;
            int fc = w & 1;
            w = b.getInt();
            int psn = w >>> 8;
            int lcrt = (w >>> 3) & 0x1F;
            int retry = w & 7;
            int pkey = b.getShort() & 0xFFFF;
            int x = b.get() & 0xFF;
            int y = b.get() & 0xFF;
            b.getInt();
            byte[] g = new byte[16];
            b.get(g);
            Gid lg = Gid.of(g);
            b.get(g);
            Gid rg = Gid.of(g);
            w = b.getInt();
            int tc = b.get() & 0xFF;
            int hl = b.get() & 0xFF;
            int z = b.get() & 0xFF;
            int at = (b.get() & 0xFF) >>> 3;
            byte[] priv = Arrays.copyOfRange(m.data(), 140, 140 + REQ_PRIVATE);
            return new Req(commId, sid, guid, qkey, qpn, rr, id, rcrt, tt, fc, psn, lcrt, retry, pkey, x >>> 4, x & 7,
                    y >>> 4, (y & 8) != 0, lg, rg, w >>> 12, w & 0x3F, tc, hl, z >>> 4, (z & 8) != 0, at, priv);
        }
    }

    /** {@code struct cm_rep_msg}. */
    record Rep(int localCommId, int remoteCommId, int localQkey, int localQpn, int startingPsn,
               int responderResources, int initiatorDepth, int targetAckDelay, int failover, int flowControl,
               int rnrRetryCount, boolean srq, long localCaGuid, byte[] priv) {
        Mad toMad(long tid) {
            ByteBuffer b = ByteBuffer.allocate(36);
            b.putInt(localCommId).putInt(remoteCommId).putInt(localQkey).putInt(localQpn << 8).putInt(0)
                    .putInt(startingPsn << 8);
            b.put((byte) responderResources).put((byte) initiatorDepth);
            b.put((byte) (targetAckDelay << 3 | failover << 1 | flowControl));
            b.put((byte) (rnrRetryCount << 5 | (srq ? 0x10 : 0)));
            b.putLong(localCaGuid);
            return mad(tid, ATTR_REP, body(b.array(), 36, priv));
        }

        static Rep of(Mad m) {
            ByteBuffer b = ByteBuffer.wrap(m.data());
            int l = b.getInt();
            int r = b.getInt();
            int qkey = b.getInt();
            int qpn = b.getInt() >>> 8;
            b.getInt();
            int psn = b.getInt() >>> 8;
            int rr = b.get() & 0xFF;
            int id = b.get() & 0xFF;
            int x = b.get() & 0xFF;
            int y = b.get() & 0xFF;
            long guid = b.getLong();
            return new Rep(l, r, qkey, qpn, psn, rr, id, x >>> 3, (x >>> 1) & 3, x & 1, y >>> 5, (y & 0x10) != 0,
                    guid, Arrays.copyOfRange(m.data(), 36, 36 + REP_PRIVATE));
        }
    }

    /** {@code struct cm_rej_msg}. */
    record Rej(int localCommId, int remoteCommId, int messageRejected, int reason, byte[] ari, byte[] priv) {
        Mad toMad(long tid) {
            ByteBuffer b = ByteBuffer.allocate(84);
            b.putInt(localCommId).putInt(remoteCommId).put((byte) (messageRejected << 6))
                    .put((byte) (ari.length << 1)).putShort((short) reason).put(ari);
            return mad(tid, ATTR_REJ, body(b.array(), 84, priv));
        }

        static Rej of(Mad m) {
            ByteBuffer b = ByteBuffer.wrap(m.data());
            int l = b.getInt();
            int r = b.getInt();
            int msg = (b.get() & 0xFF) >>> 6;
            int ariLen = Math.min(72, (b.get() & 0xFF) >>> 1);
            int reason = b.getShort() & 0xFFFF;
            byte[] d = m.data();
            return new Rej(l, r, msg, reason, Arrays.copyOfRange(d, 12, 12 + ariLen),
                    Arrays.copyOfRange(d, 84, 84 + REJ_PRIVATE));
        }
    }

    /**
     * The messages that carry only the two communication IDs (and for DREQ the remote QPN, for MRA the message
     * MRAed and the service timeout) before their private data: RTU, DREQ, DREP, MRA.
     */
    record Ids(int attr, int localCommId, int remoteCommId, int word, byte[] priv) {
        static int privAt(int attr) {
            return switch (attr) {
                case ATTR_DREQ -> 12;
                case ATTR_MRA -> 10;
                default -> 8;
            };
        }

        Mad toMad(long tid) {
            ByteBuffer b = ByteBuffer.allocate(12);
            b.putInt(localCommId).putInt(remoteCommId);
            if (attr == ATTR_DREQ) {
                b.putInt(word << 8);
            } else if (attr == ATTR_MRA) {
                b.putShort((short) word);
            }
            return mad(tid, attr, body(Arrays.copyOf(b.array(), privAt(attr)), privAt(attr), priv));
        }

        static Ids of(Mad m) {
            ByteBuffer b = ByteBuffer.wrap(m.data());
            int l = b.getInt();
            int r = b.getInt();
            int word = m.attrId() == ATTR_DREQ ? b.getInt() >>> 8 : m.attrId() == ATTR_MRA ? b.getShort() & 0xFFFF : 0;
            int at = privAt(m.attrId());
            return new Ids(m.attrId(), l, r, word, Arrays.copyOfRange(m.data(), at, Mad.DATA));
        }
    }
}
