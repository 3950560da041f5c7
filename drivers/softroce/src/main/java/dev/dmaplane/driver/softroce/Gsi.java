package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.mad.MadAddress;
import dev.dmaplane.rdma.spi.MadDatagram;
import dev.dmaplane.rdma.verbs.Gid;

import java.lang.foreign.MemorySegment;

/**
 * QP1, the GSI of the HCA's port, as rxe runs it: a UD QP whose sends are the core's MADs and whose receives go to
 * the core's MAD layer ({@code rxe_recv.c}: {@code check_keys} takes {@code GSI_QKEY} as the Q_Key of QP 1). A MAD
 * is one UD SEND ONLY packet with a DETH (Q_Key, source QP 1) and the 256 bytes of the MAD.
 */
final class Gsi {
    /** The GSI's QP number. */
    static final int QPN = 1;

    private final Engine e;
    /** The GSI's next send PSN; only the thread holding the engine touches it. */
    private int psn;

    Gsi(Engine e) {
        this.e = e;
    }

    /** Sends a MAD datagram of the core ({@code ib_post_send} on QP1). */
    void send(MadDatagram d) {
        e.transmit(() -> {
            Packet p = new Packet(d.sgid(), d.dgid(), QPN, d.destQpn(), Packet.Op.UD_SEND, true, true, psn, 1, false,
                    0, 0, 0, 0, 0, 0, 0, 0, 0, d.qkey(), Packet.Payload.Bytes.of(d.mad()), false);
            psn = Packet.psnAdd(psn, 1);
            return p;
        });
    }

    /**
     * A packet for QP1 ({@code rxe_rcv} then the GSI's responder): a UD SEND with the GSI Q_Key and 256 bytes goes to the
     * core; another opcode, another Q_Key or length is dropped and counted.
     */
    void receive(Packet p) {
        if (p.op() != Packet.Op.UD_SEND) {
            e.refuse(WireCodec.Drop.BAD_QPN, p.op() + " packet for the GSI (QP 1)");
            return;
        }
        if (p.qkey() != MadAddress.GSI_QKEY) {
            e.refuse(WireCodec.Drop.BAD_QKEY, String.format("Q_Key 0x%08x for the GSI (QP 1)", p.qkey()));
            return;
        }
        if (p.payload().length() != 256) {
            e.refuse(WireCodec.Drop.MALFORMED, "GSI datagram of " + p.payload().length() + " bytes, not a MAD");
            return;
        }
        byte[] mad = new byte[256];
        p.payload().copyTo(0, MemorySegment.ofArray(mad));
        Gid dgid = p.dgid();
        e.handle.madReceived(new MadDatagram(1, p.sgid(), dgid, p.srcQpn(), QPN, p.qkey(), WireCodec.DEFAULT_PKEY, 0,
                64, mad));
    }
}
