package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WrOpcode;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * The device's transmit thread ({@code siw_qp_tx.c}: {@code siw_run_sq}, {@code siw_qp_sq_process},
 * {@code siw_qp_sq_proc_tx}, {@code siw_send_terminate}): QPs with work are queued to it; for each it sends a
 * pending TERMINATE, then the READ responses the peer asked for, then the send queue's requests in order, each
 * message cut into DDP segments that fit one TCP segment of the netdev's MSS, each framed as an MPA FPDU. SENDs and
 * WRITEs complete once handed to TCP; a READ waits for its response (a fenced request, or a READ beyond the
 * connection's ORD, waits until the READs before it completed). Local operations run through the core.
 */
final class Tx {
    private static final Logger LOG = LoggerFactory.getLogger(Tx.class);
    private static final Duration JOIN = Duration.ofSeconds(10);
    /** Requests one QP sends before the others get their turn ({@code SQ_USER_MAXBURST}). */
    private static final int BURST = 100;
    /** What the thread gathers before it hands the stream a write. */
    private static final int BUFFER = 256 << 10;

    private final SiwProvider dev;
    private MemoryAccess mem;
    private final int mss;
    private final LinkedBlockingQueue<SiwQp> runq = new LinkedBlockingQueue<>();
    private final SiwQp stop = new SiwQp(null);
    // direct, so that the stream's write takes the bytes where they are: from a heap buffer NIO first copies them
    // into a temporary direct one (IOUtil.write), a second copy of every byte sent
    private final ByteBuffer out;
    private final MemorySegment outSeg;
    private int pos;
    private Thread thread;

    Tx(SiwProvider dev, int mss) {
        this.dev = dev;
        this.mss = mss;
        this.out = ByteBuffer.allocateDirect(BUFFER + mss);
        this.outSeg = MemorySegment.ofBuffer(out);
    }

    /** Starts the thread; the device is registered (its memory access is there). */
    synchronized void start() {
        mem = dev.memory();
        thread = Thread.ofPlatform().name("siw-tx-" + dev.name()).daemon().start(this::run);
    }

    /** Stops the thread after the work queued before; the connections are closed first, so nothing blocks it. */
    synchronized void stop() {
        if (thread == null) {
            return;
        }
        runq.add(stop);
        try {
            if (!thread.join(JOIN)) {
                LOG.error("siw: the TX thread of {} did not end within {}", dev.name(), JOIN);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        thread = null;
    }

    /** Queues {@code q} for the thread ({@code siw_sq_start}). */
    void kick(SiwQp q) {
        if (q.queued.compareAndSet(false, true)) {
            runq.add(q);
        }
    }

    private void run() {
        while (true) {
            SiwQp q;
            try {
                q = runq.take();
            } catch (InterruptedException e) {
                LOG.error("siw: the TX thread of {} was interrupted", dev.name(), e);
                return;
            }
            if (q == stop) {
                return;
            }
            q.queued.set(false);
            Cep c = q.cep;
            if (c == null || c.isGone() || !c.isEstablished() || q.destroyed) {
                continue;
            }
            pos = 0;
            try {
                process(q, c);
            } catch (IOException e) {
                LOG.debug("siw: qp {} lost its stream while sending", q.hw.qpNum(), e);
                c.lost("send failed: " + e.getMessage(), true);
            } catch (RuntimeException e) {
                LOG.error("siw: qp {} failed in the TX thread", q.hw.qpNum(), e);
                q.hw.raiseEvent(EventType.QP_FATAL);
                c.lost("TX failure: " + e, false);
            }
        }
    }

    private void process(SiwQp q, Cep c) throws IOException {
        Terminate t = q.terminate;
        if (t != null) {
            if (!q.terminateSent) {
                sendTerminate(q, c, t);
            }
            return;
        }
        serveReads(q, c);
        for (int n = 0; n < BURST; n++) {
            SendWqe w = q.held != null ? q.held : q.hw.nextSend();
            if (w == null) {
                flush(c);
                return;
            }
            q.held = null;
            boolean read = w.opcode() == WrOpcode.RDMA_READ;
            if ((w.fenced() && q.readsInFlight() > 0) || (read && q.readsInFlight() >= c.ord)) {
                q.held = w; // the response path kicks the QP when a READ completes
                flush(c);
                return;
            }
            Pending p = q.started(w);
            WcStatus s = execute(q, c, w, p);
            if (s != null) {
                q.complete(p, s); // handed to the stream, iWARP acknowledges nothing: done before a peer can answer
            }
            flush(c);
            serveReads(q, c);
        }
        flush(c);
        kick(q); // more may wait: let the other QPs have their turn first
    }

    private WcStatus execute(SiwQp q, Cep c, SendWqe w, Pending p) throws IOException {
        try {
            return switch (w.wr()) {
                case SendWr.Send s -> send(q, c, w, (w.wr().sendFlags() & SendFlags.SOLICITED) != 0
                        ? Iwarp.OP_SEND_SE : Iwarp.OP_SEND, 0);
                case SendWr.SendWithInv s -> send(q, c, w, (s.sendFlags() & SendFlags.SOLICITED) != 0
                        ? Iwarp.OP_SEND_SE_INV : Iwarp.OP_SEND_INV, s.invalidateRkey());
                case SendWr.RdmaWrite wr -> write(q, c, w, wr);
                case SendWr.RdmaRead rd -> read(q, c, w, rd, p);
                case SendWr.LocalInv li -> mem.executeLocal(q.hw, w);
                case SendWr.BindMw b -> mem.executeLocal(q.hw, w);
                default -> WcStatus.LOC_QP_OP_ERR; // refused at post (SiwProvider.checkSend)
            };
        } catch (AccessFault e) {
            LOG.debug("siw: qp {} request {} refused locally", q.hw.qpNum(), w.wrId(), e);
            return e.status();
        }
    }

    /** Reads {@code n} bytes of {@code w}'s payload at {@code off} into the FPDU at {@code at}. */
    private void payload(SiwQp q, SendWqe w, long off, int at, int n) {
        MemorySegment dst = outSeg.asSlice(at, n);
        MemorySegment inline = w.inlineData();
        if (inline != null) {
            MemorySegment.copy(inline, off, dst, 0, n);
        } else {
            Sgl.read(mem, q.hw, w.wr().sgList(), off, dst);
        }
    }

    private WcStatus send(SiwQp q, Cep c, SendWqe w, int opcode, int invStag) throws IOException {
        long len = w.length();
        int msn = ++q.txMsn[Iwarp.QN_SEND];
        int max = maxPayload(Iwarp.UNTAGGED_HDR);
        long off = 0;
        do {
            int n = (int) Math.min(max, len - off);
            int at = begin(c);
            ByteBuffer b = out.slice(at + 2, Iwarp.UNTAGGED_HDR);
            Iwarp.untagged(b, opcode, off + n == len, invStag, Iwarp.QN_SEND, msn, (int) off);
            payload(q, w, off, at + 2 + Iwarp.UNTAGGED_HDR, n);
            end(c, at, Iwarp.UNTAGGED_HDR + n);
            off += n;
        } while (off < len);
        return WcStatus.SUCCESS;
    }

    private WcStatus write(SiwQp q, Cep c, SendWqe w, SendWr.RdmaWrite wr) throws IOException {
        long len = w.length();
        int max = maxPayload(Iwarp.TAGGED_HDR);
        long off = 0;
        do {
            int n = (int) Math.min(max, len - off);
            int at = begin(c);
            ByteBuffer b = out.slice(at + 2, Iwarp.TAGGED_HDR);
            Iwarp.tagged(b, Iwarp.OP_WRITE, off + n == len, wr.rkey(), wr.remoteAddr() + off);
            payload(q, w, off, at + 2 + Iwarp.TAGGED_HDR, n);
            end(c, at, Iwarp.TAGGED_HDR + n);
            off += n;
        } while (off < len);
        return WcStatus.SUCCESS;
    }

    /**
     * A READ's request; its sink must take tagged writes (the response is one): a sink not remotely writable is
     * refused here, before anything is sent.
     */
    private WcStatus read(SiwQp q, Cep c, SendWqe w, SendWr.RdmaRead rd, Pending p) throws IOException {
        Sge sink = rd.sgList().getFirst();
        if (sink.length() > 0) {
            try {
                mem.remote(q.hw, sink.lkey(), sink.addr(), sink.length(), Access.REMOTE_WRITE).close();
            } catch (AccessFault e) {
                LOG.debug("siw: qp {} READ {} has a sink that takes no tagged writes", q.hw.qpNum(), w.wrId(), e);
                return WcStatus.LOC_PROT_ERR; // a local buffer refused: the request never leaves
            }
        }
        int at = begin(c);
        ByteBuffer b = out.slice(at + 2, Iwarp.UNTAGGED_HDR + Iwarp.READ_REQUEST_BODY);
        Iwarp.untagged(b, Iwarp.OP_READ_REQUEST, true, 0, Iwarp.QN_READ_REQUEST, ++q.txMsn[Iwarp.QN_READ_REQUEST], 0);
        Iwarp.readRequest(b, sink.lkey(), sink.addr(), (int) sink.length(), rd.rkey(), rd.remoteAddr());
        q.readSent(p); // before the request leaves: its response may come back at once
        end(c, at, Iwarp.UNTAGGED_HDR + Iwarp.READ_REQUEST_BODY);
        return null;
    }

    /** {@code siw_qp_sq_proc_tx} for the IRQ: tagged Read Response segments into the requester's sink. */
    private void serveReads(SiwQp q, Cep c) throws IOException {
        ReadResponse r;
        while (q.terminate == null && (r = q.irq.poll()) != null) {
            long len = Integer.toUnsignedLong(r.length());
            int max = maxPayload(Iwarp.TAGGED_HDR);
            long off = 0;
            do {
                int n = (int) Math.min(max, len - off);
                int at = begin(c);
                ByteBuffer b = out.slice(at + 2, Iwarp.TAGGED_HDR);
                Iwarp.tagged(b, Iwarp.OP_READ_RESPONSE, off + n == len, r.sinkStag(), r.sinkTo() + off);
                if (n > 0) {
                    try (DmaLease l = mem.remote(q.hw, r.srcStag(), r.srcTo() + off, n, Access.REMOTE_READ)) {
                        l.read(0, outSeg.asSlice(at + 2 + Iwarp.TAGGED_HDR, n));
                    } catch (AccessFault e) {
                        LOG.debug("siw: qp {} read source refused while responding", q.hw.qpNum(), e);
                        pos = at;
                        q.terminate = new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_PROTECTION,
                                dev.rdmapError(q, r.srcStag(), r.srcTo() + off, n, Access.REMOTE_READ));
                        q.hw.enterError();
                        q.hw.raiseEvent(EventType.QP_ACCESS_ERR);
                        flush(c);
                        sendTerminate(q, c, q.terminate);
                        return;
                    }
                }
                end(c, at, Iwarp.TAGGED_HDR + n);
                off += n;
            } while (off < len);
            q.inboundReads.decrementAndGet(); // answered in full: the peer may send one more request
        }
    }

    /**
     * {@code siw_send_terminate}: the TERMINATE on queue 2, then our half of the stream is closed and the QP goes
     * to ERR; the peer closes the rest.
     */
    private void sendTerminate(SiwQp q, Cep c, Terminate t) throws IOException {
        q.terminateSent = true;
        int at = begin(c);
        ByteBuffer b = out.slice(at + 2, Iwarp.UNTAGGED_HDR + Iwarp.TERMINATE_BODY);
        Iwarp.untagged(b, Iwarp.OP_TERMINATE, true, 0, Iwarp.QN_TERMINATE, ++q.txMsn[Iwarp.QN_TERMINATE], 0);
        b.putInt(t.word());
        end(c, at, Iwarp.UNTAGGED_HDR + Iwarp.TERMINATE_BODY);
        dev.terminateSent(t); // counted before the peer can see it
        flush(c);
        c.ch.shutdownOutput();
        q.connectionGone(c);
    }

    private int maxPayload(int hdr) {
        return mss - Mpa.FPDU_OVERHEAD - hdr - 3;
    }

    /** Where the next FPDU starts, the buffer flushed first when it might not fit. */
    private int begin(Cep c) throws IOException {
        if (pos + mss > out.capacity()) {
            flush(c);
        }
        return pos;
    }

    /** Seals the FPDU at {@code at} whose ULPDU is {@code ulpdu} bytes and shows it to the capture. */
    private void end(Cep c, int at, int ulpdu) {
        int len = Mpa.seal(out, at, ulpdu);
        dev.captureData(c, out, at, len);
        pos = at + len;
    }

    private void flush(Cep c) throws IOException {
        ByteBuffer b = out.slice(0, pos);
        while (b.hasRemaining()) {
            c.ch.write(b);
        }
        pos = 0;
    }
}
