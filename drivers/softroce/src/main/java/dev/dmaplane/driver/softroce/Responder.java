package dev.dmaplane.driver.softroce;

import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.driver.softroce.Packet.Op;
import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.RecvResult;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.WcStatus;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * The responder of one HCA ({@code rxe_resp.c}): PSN checks, duplicates, RNR, the operations (SEND into a
 * receive, WRITE, READ responses, atomics) checked through the core's memory access, coalesced ACKs and NAKs.
 * Runs on the thread running its {@link Engine}.
 */
final class Responder {
    /** The longest SEND message the responder gathers (the largest Java array). */
    private static final long RECV_MAX = Integer.MAX_VALUE - 8;

    private final Engine e;

    Responder(Engine e) {
        this.e = e;
    }

    /** A request packet for {@code qp}: PSN checks, then the operation ({@code rxe_resp.c}'s state machine). */
    void onRequest(QpCtx c, HwQp qp, Packet p) {
        QpState s = qp.state();
        if (s != QpState.RTR && s != QpState.RTS && s != QpState.SQD && s != QpState.SQE) {
            return;
        }
        if (p.op() == Op.UD_SEND || p.op() == Op.UD_SEND_IMM) {
            udReceive(qp, p);
            return;
        }
        if ((qp.type() != QpType.RC && qp.type() != QpType.UC) || p.srcQpn() != qp.attr().destQpNum()) {
            return;
        }
        int d = Packet.psnDiff(p.psn(), c.epsn);
        if (d < 0 && d + p.count() > 0) { // a train whose first packets were taken already
            p = p.dropFront(-d, qp.attr().pathMtu().bytes());
            d = 0;
        }
        if (qp.type() == QpType.UC) {
            // UC: nothing is acknowledged or retransmitted; a gap drops the message in progress and the next
            // message's first packet resynchronises (IBTA 9.7.7.1)
            if (d != 0) {
                if (!p.first()) {
                    return;
                }
                c.resetResponder();
                c.epsn = p.psn();
            }
            if (p.op() == Op.READ_REQ || p.op() == Op.CMP_SWAP || p.op() == Op.FETCH_ADD) {
                return;
            }
            d = 0;
        }
        if (d > 0) {
            if (!c.nakSent) {
                c.nakSent = true;
                e.counters.outOfSeqNaksSent++;
                ack(c, p, Packet.AETH_NAK_PSN_SEQ, c.epsn);
            }
            return;
        }
        if (d < 0) {
            duplicate(c, p);
            return;
        }
        c.nakSent = false;
        if ((p.op() == Op.READ_REQ || p.op() == Op.CMP_SWAP || p.op() == Op.FETCH_ADD)
                && qp.attr().maxDestRdAtomic() == 0) {
            // no responder resources for reads and atomics (max_dest_rd_atomic 0): rxe's check_resource
            // RESPST_ERR_TOO_MANY_RDMA_ATM_REQ, an Invalid Request NAK
            nakFatal(c, p, Packet.AETH_NAK_INV_REQ);
            return;
        }
        switch (p.op()) {
            case SEND, SEND_IMM, SEND_INV -> recvSend(c, p);
            case WRITE, WRITE_IMM -> recvWrite(c, p);
            case READ_REQ -> recvRead(c, p);
            case CMP_SWAP, FETCH_ADD -> recvAtomic(c, p);
            default -> {
            }
        }
    }



    /**
     * Acknowledges {@code psn}: a plain ACK waits until the end of the burst being received and then covers every
     * message of the QP the burst completed (coalescing); a NAK, and any other response, first sends the ACK
     * waiting, so that responses leave in PSN order.
     */
    private void ack(QpCtx c, Packet req, int syndrome, int psn) {
        if (c.qp.type() == QpType.UC) {
            return; // UC has no acknowledgements
        }
        if (syndrome == Packet.AETH_ACK) {
            c.ackPsn = psn;
            c.ackDgid = req.sgid();
            c.ackDqpn = req.srcQpn();
            if (!c.ackWaiting) {
                c.ackWaiting = true;
                e.acks.add(c);
            }
            return;
        }
        flushAck(c);
        if ((syndrome & 0x60) == Packet.AETH_RNR) {
            e.counters.rnrNaksSent++;
        }
        e.send(Packet.control(e.gid, req.sgid(), c.qp.qpNum(), req.srcQpn(), Op.ACK, psn, false, 0, 0, 0, 0, 0, syndrome,
                c.msn, 0));
    }

    /** Sends the coalesced ACK of {@code c}, if one waits. */
    void flushAck(QpCtx c) {
        if (c.ackWaiting) {
            c.ackWaiting = false;
            e.send(Packet.control(e.gid, c.ackDgid, c.qp.qpNum(), c.ackDqpn, Op.ACK, c.ackPsn, false, 0, 0, 0, 0, 0,
                    Packet.AETH_ACK, c.msn, 0));
        }
    }

    /** End of a received burst: every waiting ACK goes out. */
    void flushAcks() {
        for (int i = 0; i < e.acks.size(); i++) {
            flushAck(e.acks.get(i));
        }
        e.acks.clear();
    }

    /** A class B/C responder error: NAK and the responder's QP goes to ERR. */
    private void nakFatal(QpCtx c, Packet req, int syndrome) {
        c.resetResponder();
        if (c.qp.type() == QpType.UC) {
            return; // UC: the message is dropped, the QP stays up
        }
        c.qp.enterError();
        ack(c, req, syndrome, req.psn());
    }

    private void duplicate(QpCtx c, Packet p) {
        e.counters.duplicates++;
        switch (p.op()) {
            case READ_REQ -> recvReadAt(c, p, false);
            case CMP_SWAP, FETCH_ADD -> {
                Long orig = c.atomicResults.get(p.psn());
                if (orig != null) {
                    flushAck(c);
                    e.send(Packet.control(e.gid, p.sgid(), c.qp.qpNum(), p.srcQpn(), Op.ATOMIC_ACK, p.psn(), false, 0, 0,
                            0, 0, 0, Packet.AETH_ACK, c.msn, orig));
                }
            }
            default -> {
                if (p.last()) {
                    ack(c, p, Packet.AETH_ACK, Packet.psnAdd(c.epsn, -1));
                    flushAck(c); // a duplicate is answered at once: the requester is retrying
                }
            }
        }
    }

    private static int nakFor(AccessFault f) {
        return switch (f.status()) {
            case REM_INV_REQ_ERR -> Packet.AETH_NAK_INV_REQ;
            case REM_ACCESS_ERR -> Packet.AETH_NAK_REM_ACCESS;
            default -> Packet.AETH_NAK_REM_OP;
        };
    }

    /** The receive a SEND or WRITE_WITH_IMM consumes, or null after an RNR NAK with the QP's min_rnr_timer. */
    private RecvWqe takeRecvOrRnr(QpCtx c, Packet p) {
        RecvWqe r = c.qp.takeRecv();
        if (r == null) {
            c.nakSent = true;
            ack(c, p, Packet.AETH_RNR | (c.qp.attr().minRnrTimer() & 31), p.psn());
        }
        return r;
    }

    private void recvSend(QpCtx c, Packet p) {
        HwQp qp = c.qp;
        if (p.first()) {
            RecvWqe r = takeRecvOrRnr(c, p);
            if (r == null) {
                return;
            }
            c.recv = r;
            c.recvBuf = new byte[(int) Math.min(RECV_MAX, Math.max(p.dmaLen(), 0))];
            c.recvOff = 0;
        }
        if (c.recv == null) {
            return;
        }
        Packet.Payload pl = p.payload();
        long n = pl.length();
        long need = c.recvOff + n;
        if (need > c.recv.length() || need > RECV_MAX) {
            RecvWqe r = c.recv;
            c.recv = null;
            ack(c, p, Packet.AETH_NAK_INV_REQ, p.psn());
            qp.completeRecv(r, RecvResult.error(WcStatus.LOC_LEN_ERR));
            return;
        }
        if (need > c.recvBuf.length) {
            // a SEND_FIRST from the wire does not say how long the message is (no RETH): the buffer grows
            // within the receive's length
            long grown = Math.max(need, Math.max(2L * c.recvBuf.length, 4096));
            c.recvBuf = Arrays.copyOf(c.recvBuf, (int) Math.min(grown, Math.min(c.recv.length(), RECV_MAX)));
        }
        if (n > 0) {
            pl.copyTo(0, MemorySegment.ofArray(c.recvBuf).asSlice(c.recvOff, n));
        }
        c.recvOff += n;
        if (!advance(c, p)) {
            return;
        }
        RecvWqe r = c.recv;
        c.recv = null;
        long len = c.recvOff;
        if (p.op() == Op.SEND_INV) {
            e.clearLeases(); // the invalidation may need what the kept leases hold
        }
        try {
            e.handle.memory().scatter(qp, r.wr().sgList(), MemorySegment.ofArray(c.recvBuf).asSlice(0, len));
        } catch (AccessFault f) {
            ack(c, p, f.status() == WcStatus.LOC_LEN_ERR ? Packet.AETH_NAK_INV_REQ : Packet.AETH_NAK_REM_OP, p.psn());
            qp.completeRecv(r, RecvResult.error(f.status()));
            return;
        } catch (DmaFaultException x) {
            ack(c, p, Packet.AETH_NAK_REM_OP, p.psn());
            qp.completeRecv(r, RecvResult.error(WcStatus.LOC_PROT_ERR));
            return;
        }
        if (p.op() == Op.SEND_INV && !e.handle.memory().invalidateRemote(qp, p.imm())) {
            // rxe_resp.c execute(): the bytes are placed, then invalidate_rkey fails (RESPST_ERR_INVALIDATE_RKEY,
            // class J): the receive completes with REM_INV_REQ_ERR and the QP goes to ERR, but no NAK syndrome is
            // set, so acknowledge() answers with a plain ACK and the requester's SEND_WITH_INV completes successfully
            ack(c, p, Packet.AETH_ACK, p.lastPsn());
            flushAck(c);
            qp.completeRecv(r, RecvResult.error(WcStatus.REM_INV_REQ_ERR));
            return;
        }
        c.recvBuf = null;
        c.msn++;
        ack(c, p, Packet.AETH_ACK, p.lastPsn());
        int src = p.srcQpn();
        boolean sol = p.se();
        qp.completeRecv(r, switch (p.op()) {
            case SEND_IMM -> RecvResult.sendWithImm(len, src, p.imm(), sol);
            case SEND_INV -> RecvResult.sendWithInv(len, src, p.imm(), sol);
            default -> RecvResult.send(len, src, sol);
        });
    }

    /**
     * Takes {@code p}'s PSNs; a packet before its message's last is acknowledged when it asks for it (AckReq).
     * Whether {@code p} ends its message.
     */
    private boolean advance(QpCtx c, Packet p) {
        c.epsn = Packet.psnAdd(c.epsn, p.count());
        if (p.last()) {
            return true;
        }
        if (p.ackReq()) {
            ack(c, p, Packet.AETH_ACK, p.lastPsn());
        }
        return false;
    }

    /** Where each message of a train lands in the train's remote lease (used by the thread running the engine). */
    private long[] trainTargets = new long[Requester.TRAIN_MAX];

    /**
     * A train of single-packet WRITE messages ({@link Packet.Payload.Messages}): one lease of the range they all
     * write, through the packet's rkey, so that every message, inside it, passes the checks of its own lease; then
     * the copies as one descriptor chain, and one coalesced ACK. When that lease is refused or the IOMMU refuses a
     * copy, the messages not written yet go one by one, each as the packet it stands for, so that the failing one
     * is NAKed exactly as it would be alone; a stored train goes one by one too.
     */
    private void recvWrites(QpCtx c, Packet p, Packet.Payload.Messages m) {
        int n = m.count();
        int done = 0;
        if (m.leases() != null) {
            long[] to = trainTargets.length >= n ? trainTargets : (trainTargets = new long[n]);
            DmaLease[] from = m.leases();
            try (LeaseCache.Held l = e.remote(c.qp, p.rkey(), m.lo(), m.hi() - m.lo(), Access.REMOTE_WRITE)) {
                for (int i = 0; i < n; i++) {
                    to[i] = l.offset() + (m.vas()[i] - m.lo());
                }
                while (done < n) { // one chain per run of messages read through the same lease
                    int end = done + 1;
                    while (end < n && from[end] == from[done]) {
                        end++;
                    }
                    while (done < end) {
                        done += from[done].copyTo(m.offsets(), l.lease(), to, m.lengths(), done, end);
                    }
                }
            } catch (AccessFault | DmaFaultException x) {
                // the messages from `done` on go one by one below
            }
        }
        if (done > 0) {
            c.epsn = Packet.psnAdd(c.epsn, done);
            c.msn += done;
            ack(c, p, Packet.AETH_ACK, Packet.psnAdd(p.psn(), done - 1));
        }
        for (int i = done; i < n; i++) {
            onRequest(c, c.qp, new Packet(p.sgid(), p.dgid(), p.srcQpn(), p.destQpn(), Op.WRITE, true, true,
                    Packet.psnAdd(p.psn(), i), 1, true, m.vas()[i], p.rkey(), m.lengths()[i], 0, 0, 0, 0, 0, 0, 0,
                    m.message(i), false));
        }
    }

    private void recvWrite(QpCtx c, Packet p) {
        HwQp qp = c.qp;
        if (p.payload() instanceof Packet.Payload.Messages m) {
            recvWrites(c, p, m);
            return;
        }
        Packet.Payload pl = p.payload();
        long n = pl.length();
        if (p.last() && p.op() == Op.WRITE_IMM) {
            // the packet carrying the immediate consumes the receive, before its bytes are written: on the wire
            // only the last packet says the message has one (rxe_resp.c check_resource, RXE_RWR_MASK)
            RecvWqe r = takeRecvOrRnr(c, p);
            if (r == null) {
                return;
            }
            c.recv = r;
        }
        if (p.first()) {
            c.wva = p.va();
            c.wrkey = p.rkey();
            c.woff = 0;
        }
        // the first packet leases the whole message (RETH: va, rkey, DMA length), the others their own bytes
        long leaseVa = p.first() ? p.va() : c.wva + c.woff;
        long leaseLen = p.first() ? p.dmaLen() : n;
        try (LeaseCache.Held l = e.remote(qp, c.wrkey, leaseVa, leaseLen, Access.REMOTE_WRITE)) {
            if (n > 0) {
                pl.writeTo(0, l.lease(), l.offset(), n);
            }
        } catch (AccessFault f) {
            c.recv = null;
            nakFatal(c, p, nakFor(f));
            return;
        } catch (DmaFaultException x) {
            c.recv = null;
            nakFatal(c, p, Packet.AETH_NAK_REM_OP);
            return;
        }
        c.woff += n;
        if (!advance(c, p)) {
            return;
        }
        c.msn++;
        ack(c, p, Packet.AETH_ACK, p.lastPsn());
        if (p.op() == Op.WRITE_IMM && c.recv != null) {
            RecvWqe r = c.recv;
            c.recv = null;
            qp.completeRecv(r, RecvResult.writeWithImm(c.woff, p.srcQpn(), p.imm(), p.se()));
        }
    }

    private void recvRead(QpCtx c, Packet p) {
        recvReadAt(c, p, true);
    }

    private void recvReadAt(QpCtx c, Packet p, boolean fresh) {
        HwQp qp = c.qp;
        int mtu = qp.attr().pathMtu().bytes();
        long len = p.dmaLen();
        int pkts = Packet.packetsFor(len, mtu);
        flushAck(c);
        e.flushTx(); // the response carries a range of the lease: it leaves before the lease closes
        try (LeaseCache.Held h = e.remote(qp, p.rkey(), p.va(), len, Access.REMOTE_READ)) {
            DmaLease l = h.lease();
            Packet.Payload all = new Packet.Payload.Span(l, h.offset(), len);
            if (!l.stable()) {
                all = all.materialize(); // see transmit: only stable leases stay open across the delivery
            }
            int per = e.transport.perPacket() ? 1 : pkts;
            for (int i = 0; i < pkts; i += per) {
                int k = Math.min(per, pkts - i);
                long from = (long) i * mtu;
                long to = Math.min(len, from + (long) k * mtu);
                e.send(new Packet(e.gid, p.sgid(), qp.qpNum(), p.srcQpn(), Op.READ_RESP, i == 0, i + k == pkts,
                        Packet.psnAdd(p.psn(), i), k, false, 0, 0, 0, 0, 0, 0, Packet.AETH_ACK, c.msn, 0, 0,
                        k == pkts ? all : all.slice(from, to - from), false));
            }
            e.flushTx();
        } catch (AccessFault f) {
            if (fresh) {
                nakFatal(c, p, nakFor(f));
            }
            return;
        } catch (DmaFaultException x) {
            if (fresh) {
                nakFatal(c, p, Packet.AETH_NAK_REM_OP);
            }
            return;
        }
        if (fresh) {
            c.epsn = Packet.psnAdd(c.epsn, pkts);
            c.msn++;
        }
    }

    private void recvAtomic(QpCtx c, Packet p) {
        HwQp qp = c.qp;
        if ((p.va() & 7) != 0) {
            nakFatal(c, p, Packet.AETH_NAK_INV_REQ);
            return;
        }
        long old;
        try (LeaseCache.Held h = e.remote(qp, p.rkey(), p.va(), 8, Access.REMOTE_ATOMIC)) {
            old = p.op() == Op.CMP_SWAP ? h.lease().compareAndSwap(h.offset(), p.compare(), p.swapAdd())
                    : h.lease().fetchAndAdd(h.offset(), p.swapAdd());
        } catch (AccessFault f) {
            nakFatal(c, p, nakFor(f));
            return;
        } catch (DmaFaultException x) {
            nakFatal(c, p, Packet.AETH_NAK_REM_OP);
            return;
        }
        c.atomicResults.put(p.psn(), old);
        c.epsn = Packet.psnAdd(c.epsn, 1);
        c.msn++;
        flushAck(c);
        e.send(Packet.control(e.gid, p.sgid(), qp.qpNum(), p.srcQpn(), Op.ATOMIC_ACK, p.psn(), false, 0, 0, 0, 0, 0,
                Packet.AETH_ACK, c.msn, old));
    }

    private void udReceive(HwQp qp, Packet p) {
        if (qp.type() != QpType.UD) {
            e.refuse(WireCodec.Drop.BAD_QPN, "UD packet for " + qp.type() + " QP " + qp.qpNum());
            return;
        }
        if (p.qkey() != qp.attr().qkey()) {
            e.refuse(WireCodec.Drop.BAD_QKEY, String.format("Q_Key 0x%08x for QP %d", p.qkey(), qp.qpNum()));
            return; // wrong Q_Key: silently dropped (IBTA 10.2.4), counted
        }
        RecvWqe r = qp.takeRecv();
        if (r == null) {
            return; // UD has no RNR: the datagram is dropped
        }
        Packet.Payload pl = p.payload();
        int plen = (int) pl.length();
        byte[] buf = new byte[40 + plen];
        // GRH: IP version 6, payload length, next header 0x1B (IBA), hop limit, SGID, DGID
        buf[0] = 0x60;
        buf[4] = (byte) (plen >> 8);
        buf[5] = (byte) plen;
        buf[6] = 0x1B;
        buf[7] = 64;
        System.arraycopy(p.sgid().raw(), 0, buf, 8, 16);
        System.arraycopy(p.dgid().raw(), 0, buf, 24, 16);
        pl.copyTo(0, MemorySegment.ofArray(buf).asSlice(40, plen));
        try {
            e.handle.memory().scatter(qp, r.wr().sgList(), MemorySegment.ofArray(buf));
        } catch (AccessFault f) {
            qp.completeRecv(r, RecvResult.error(f.status()));
            return;
        }
        RecvResult res = p.op() == Op.UD_SEND_IMM ? RecvResult.sendWithImm(plen + 40L, p.srcQpn(), p.imm(), p.se())
                : RecvResult.send(plen + 40L, p.srcQpn(), p.se());
        qp.completeRecv(r, res.withGrh());
    }
}
