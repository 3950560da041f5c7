package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.mad.Mad;
import dev.dmaplane.rdma.mad.MadAddress;
import dev.dmaplane.rdma.mad.MadAgent;
import dev.dmaplane.rdma.mad.MadHandler;
import dev.dmaplane.rdma.mad.MadSendBuf;
import dev.dmaplane.rdma.mad.MadSendStatus;
import dev.dmaplane.rdma.verbs.Gid;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static dev.dmaplane.testing.Eventually.eventually;

/**
 * A raw CM end for the rdma_cm tests over {@link Hcas}: a MAD agent of the CM class on rxe1's port 1 registered
 * with class version 1 (the CM's own agent holds version 2), through which CM messages built here by hand, of
 * version 2 and laid out as IBTA 12.6 and {@code cm_msgs.h} lay them out, go from rxe1's GSI to rxe0's GSI, where
 * rxe0's CM takes them as any peer's ({@code ib_post_send_mad} sends a MAD as it was built, as a umad program's
 * goes); and every CM MAD the fabric carries, recorded in order through its loss hook, which drops none. Made before
 * the connection it watches, so that it sees the REP with both communication IDs.
 */
final class RawCm {
    /** {@code CM_REQ_ATTR_ID}. */
    static final int REQ = 0x10;
    /** {@code CM_MRA_ATTR_ID}. */
    static final int MRA = 0x11;
    /** {@code CM_REJ_ATTR_ID}. */
    static final int REJ = 0x12;
    /** {@code CM_REP_ATTR_ID}. */
    static final int REP = 0x13;
    /** {@code CM_RTU_ATTR_ID}. */
    static final int RTU = 0x14;
    /** {@code CM_DREQ_ATTR_ID}. */
    static final int DREQ = 0x15;
    /** {@code CM_DREP_ATTR_ID}. */
    static final int DREP = 0x16;
    /** REJ's "message rejected" and MRA's "message MRAed": the REQ, the REP, another message. */
    static final int MSG_REQ = 0;
    static final int MSG_REP = 1;
    static final int MSG_OTHER = 2;
    /** Communication IDs no connection has: the marker DREQ that {@code cm_issue_drep} answers. */
    private static final int MARK_LOCAL = 0x7EEE_0001;
    private static final int MARK_REMOTE = 0x7EEE_0002;

    private final MadAgent agent;
    private final MadAddress toRxe0;
    private final Gid rxe1 = Gid.of(CmEnd.at("10.0.0.5", 0).getAddress());
    /** The CM MADs on the wire, in order, with the GID each went to. */
    private final List<Seen> seen = new CopyOnWriteArrayList<>();
    /** The attribute of the CM messages to rxe1 the fabric loses (0: none). */
    private volatile int lostToRxe1;
    private int nextTid;

    private record Seen(Gid dgid, Mad mad) {
    }

    RawCm(Hcas h) {
        agent = h.core.device("rxe1").orElseThrow().registerMadAgent(1, Mad.CLASS_CM, 1, new MadHandler() {
            @Override
            public void received(MadAddress from, Mad mad) {
            }

            @Override
            public void sendDone(MadSendBuf send, MadSendStatus status, Mad response) {
            }
        });
        toRxe0 = MadAddress.gsi(rxe1, Gid.of(CmEnd.at("10.0.0.4", 0).getAddress()));
        h.driver.fabric.loss = p -> {
            if (p.destQpn() != 1 || p.payload().length() != Mad.SIZE) {
                return false;
            }
            byte[] b = new byte[Mad.SIZE];
            p.payload().copyTo(0, MemorySegment.ofArray(b));
            Mad m = Mad.decode(b);
            if (m.mgmtClass() != Mad.CLASS_CM) {
                return false;
            }
            seen.add(new Seen(p.dgid(), m));
            return m.attrId() == lostToRxe1 && p.dgid().equals(rxe1);
        };
    }

    /** From now on the fabric loses every CM message of attribute {@code attr} to rxe1 (and records it). */
    void loseToRxe1(int attr) {
        lostToRxe1 = attr;
    }

    /** The local and remote communication IDs of the last CM message of attribute {@code attr} on the wire. */
    int[] lastIds(int attr) {
        Mad m = seen.reversed().stream().map(Seen::mad).filter(x -> x.attrId() == attr).findFirst().orElseThrow();
        ByteBuffer b = ByteBuffer.wrap(m.data());
        return new int[]{b.getInt(), b.getInt()};
    }

    /** The transaction ID of the last CM message of attribute {@code attr} on the wire. */
    long lastTid(int attr) {
        return seen.reversed().stream().map(Seen::mad).filter(x -> x.attrId() == attr).findFirst().orElseThrow().tid();
    }

    /**
     * The last REJ on the wire ({@code struct cm_rej_msg}): its local and remote communication IDs, message rejected
     * and reason.
     */
    int[] lastRej() {
        Mad m = seen.reversed().stream().map(Seen::mad).filter(x -> x.attrId() == REJ).findFirst().orElseThrow();
        ByteBuffer b = ByteBuffer.wrap(m.data());
        return new int[]{b.getInt(0), b.getInt(4), (b.get(8) & 0xFF) >>> 6, b.getShort(10) & 0xFFFF};
    }

    /**
     * The last MRA on the wire ({@code struct cm_mra_msg}): its local and remote communication IDs, message MRAed and
     * service timeout.
     */
    int[] lastMra() {
        Mad m = seen.reversed().stream().map(Seen::mad).filter(x -> x.attrId() == MRA).findFirst().orElseThrow();
        ByteBuffer b = ByteBuffer.wrap(m.data());
        return new int[]{b.getInt(0), b.getInt(4), (b.get(8) & 0xFF) >>> 6, (b.get(9) & 0xFF) >>> 3};
    }

    /** How many CM messages of attribute {@code attr} went over the wire so far, to either end. */
    long count(int attr) {
        return seen.stream().filter(x -> x.mad().attrId() == attr).count();
    }

    /**
     * The last CM message of attribute {@code attr} on the wire sent again to rxe0, byte for byte (its TID too), as
     * the MAD layer's retry of it would come.
     */
    void repeat(int attr) {
        Mad m = seen.reversed().stream().map(Seen::mad).filter(x -> x.attrId() == attr).findFirst().orElseThrow();
        agent.send(toRxe0, m, 0, 0, null);
    }

    /** How many CM messages of attribute {@code attr} went to rxe1 (the server's CM) so far. */
    long countToRxe1(int attr) {
        return seen.stream().filter(x -> x.mad().attrId() == attr && x.dgid().equals(rxe1)).count();
    }

    private void send(int attr, ByteBuffer data) {
        byte[] d = new byte[Mad.DATA];
        data.flip();
        data.get(d, 0, data.limit());
        agent.send(toRxe0, Mad.of(Mad.CLASS_CM, Mad.CM_CLASS_VERSION, Mad.METHOD_SEND,
                (long) agent.hiTid() << 32 | ++nextTid, attr, d), 0, 0, null);
    }

    /** A REJ ({@code struct cm_rej_msg}) with these IDs, message rejected and reason; no ARI, no private data. */
    void rej(int localCommId, int remoteCommId, int messageRejected, int reason) {
        send(REJ, ByteBuffer.allocate(12).putInt(localCommId).putInt(remoteCommId).put((byte) (messageRejected << 6))
                .put((byte) 0).putShort((short) reason));
    }

    /**
     * A REQ ({@code struct cm_req_msg}) with this local communication ID, service ID, CA GUID and local QPN; every
     * other field 0 (no path, no private data), as the CM looks at no more before it matches the REQ.
     */
    void req(int localCommId, long serviceId, long caGuid, int localQpn) {
        send(REQ, ByteBuffer.allocate(140).putInt(localCommId).putInt(0).putLong(serviceId).putLong(caGuid).putInt(0)
                .putInt(0).putInt(localQpn << 8).position(140));
    }

    /**
     * A REP ({@code struct cm_rep_msg}) with these IDs, local QPN and CA GUID; every other field 0 (no private data),
     * as the CM looks at no more before it matches the REP.
     */
    void rep(int localCommId, int remoteCommId, int localQpn, long caGuid) {
        send(REP, ByteBuffer.allocate(36).putInt(localCommId).putInt(remoteCommId).putInt(0).putInt(localQpn << 8)
                .putInt(0).putInt(0).putInt(0).putLong(caGuid));
    }

    /** An MRA ({@code struct cm_mra_msg}) with these IDs, message MRAed and service timeout (an IBA time). */
    void mra(int localCommId, int remoteCommId, int messageMraed, int serviceTimeout) {
        send(MRA, ByteBuffer.allocate(10).putInt(localCommId).putInt(remoteCommId).put((byte) (messageMraed << 6))
                .put((byte) (serviceTimeout << 3)));
    }

    /** A DREQ ({@code struct cm_dreq_msg}) with these IDs and the receiver's QPN. */
    void dreq(int localCommId, int remoteCommId, int remoteQpn) {
        send(DREQ, ByteBuffer.allocate(12).putInt(localCommId).putInt(remoteCommId).putInt(remoteQpn << 8));
    }

    /**
     * Whether rxe0's CM answers a DREQ with these IDs with a DREP: the DREQ, then a marker DREQ with IDs no connection
     * has, which {@code cm_issue_drep} answers; rxe0's MAD thread handles the two in order and sends its answers in
     * order, so once the marker's DREP crossed the fabric, the first DREQ's DREP did before it, or never comes.
     */
    boolean answersDreq(int localCommId, int remoteCommId, int remoteQpn) {
        int from = seen.size();
        dreq(localCommId, remoteCommId, remoteQpn);
        dreq(MARK_LOCAL, MARK_REMOTE, 0);
        eventually(() -> indexOfDrep(from, MARK_REMOTE, MARK_LOCAL) >= 0, Duration.ofSeconds(10),
                "cm_issue_drep's DREP to the marker DREQ");
        int answer = indexOfDrep(from, remoteCommId, localCommId);
        return answer >= 0 && answer < indexOfDrep(from, MARK_REMOTE, MARK_LOCAL);
    }

    /** Whether a DREP with these local and remote communication IDs went over the wire so far. */
    boolean drepSeen(int localCommId, int remoteCommId) {
        return indexOfDrep(0, localCommId, remoteCommId) >= 0;
    }

    private int indexOfDrep(int from, int localCommId, int remoteCommId) {
        for (int i = from; i < seen.size(); i++) {
            Mad m = seen.get(i).mad();
            ByteBuffer b = ByteBuffer.wrap(m.data());
            if (m.attrId() == DREP && b.getInt() == localCommId && b.getInt() == remoteCommId) {
                return i;
            }
        }
        return -1;
    }
}
