package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwCmHandler;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwConnRequest;
import dev.dmaplane.rdma.spi.IwConnection;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A connection endpoint ({@code struct siw_cep}, {@code siw_cm.c}): one TCP connection, its MPA start-up (request,
 * reply, reject) and its receive thread, which then reads the stream's FPDUs ({@link Rx}). The active side's thread
 * connects and sends the MPA request; the passive side's reads the request, reports it as CONNECT_REQUEST and waits
 * for {@link #accept} or {@link #reject}. A lost stream moves the QP to ERR (flushing it) and reports DISCONNECT (the
 * peer closed or terminated) and CLOSE, once.
 */
final class Cep implements IwConnection, IwConnRequest {
    private static final Logger LOG = LoggerFactory.getLogger(Cep.class);
    private static final Duration JOIN = Duration.ofSeconds(10);

    final SiwProvider dev;
    final SocketChannel ch;
    final boolean active;
    private volatile InetSocketAddress local;
    private volatile InetSocketAddress remote;
    volatile SiwQp qp;
    volatile IwCmHandler handler;
    /** Outbound READs this side may have in flight. */
    volatile int ord = 1;
    private final IwConnParam param;
    private final CompletableFuture<Boolean> answer = new CompletableFuture<>();
    private final AtomicBoolean gone = new AtomicBoolean();
    private volatile boolean peerClosed;
    /** Whether the MPA exchange completed and the QP is in RTS on this connection. */
    private volatile boolean established;
    /** Whether the active side's CONNECT_REPLY was reported. */
    private volatile boolean replied;
    /** How a failed connect is reported (ECONNRESET when the stream just broke), and the peer's private data. */
    private volatile Errno failure = Errno.ECONNRESET;
    private volatile byte[] failurePd = new byte[0];
    private Thread thread;

    // the capture's view of the stream: bytes this side sent and received (TCP sequence numbers follow them)
    volatile long sent;
    volatile long received;

    private Cep(SiwProvider dev, SocketChannel ch, boolean active, InetSocketAddress remote, IwConnParam param) {
        this.dev = dev;
        this.ch = ch;
        this.active = active;
        this.remote = remote;
        this.param = param;
    }

    /** The active side of QP {@code q} towards {@code remote}; {@link #start()} connects. */
    static Cep connecting(SiwProvider dev, SiwQp q, InetSocketAddress remote, IwConnParam param,
                          IwCmHandler handler) throws IOException {
        Cep c = new Cep(dev, SocketChannel.open(), true, remote, param);
        c.qp = q;
        c.handler = handler;
        c.ord = Math.max(1, param.ord());
        return c;
    }

    /** The passive side of a connection a listener accepted; the listener's handler gets its request. */
    static Cep accepted(SiwProvider dev, SocketChannel ch, IwCmHandler listenHandler) throws IOException {
        Cep c = new Cep(dev, ch, false, (InetSocketAddress) ch.getRemoteAddress(), null);
        c.local = (InetSocketAddress) ch.getLocalAddress();
        c.handler = listenHandler;
        return c;
    }

    /** Starts the endpoint's thread (connect or wait for the request, then receive). */
    synchronized void start() {
        thread = Thread.ofPlatform().name("siw-rx-" + dev.name() + "-" + (active ? "a" : "p") + dev.nextCepId())
                .daemon().start(this::run);
    }

    @Override
    public int qpn() {
        SiwQp q = qp;
        return q == null ? 0 : q.hw.qpNum();
    }

    @Override
    public InetSocketAddress local() {
        return local;
    }

    @Override
    public InetSocketAddress remote() {
        return remote;
    }

    private void run() {
        try {
            if (active) {
                if (!connectActive()) {
                    return;
                }
            } else if (!waitForAnswer()) {
                return;
            }
            new Rx(this).loop();
            lost("the peer closed the stream", true);
        } catch (ClosedChannelException e) {
            lost("closed locally", false);
        } catch (IOException e) {
            LOG.debug("siw: connection {} -> {} failed", local, remote, e);
            lost(String.valueOf(e.getMessage()), true);
        } catch (RuntimeException e) {
            LOG.error("siw: connection {} -> {} failed unexpectedly", local, remote, e);
            lost(e.toString(), false);
        }
    }

    /** TCP connect, MPA request, MPA reply ({@code siw_connect}, {@code siw_proc_mpareply}). */
    private boolean connectActive() throws IOException {
        try {
            ch.bind(new InetSocketAddress(dev.address(), 0));
            ch.connect(remote);
        } catch (ConnectException e) {
            failConnect(Errno.ECONNREFUSED, new byte[0], "connect refused: " + e.getMessage());
            return false;
        }
        local = (InetSocketAddress) ch.getLocalAddress();
        dev.captureHandshake(this);
        write(Mpa.frame(false, false, param.privateData()));
        Mpa.Frame rep;
        try {
            rep = Mpa.read(ch, true);
        } catch (ErrnoException e) {
            failConnect(Errno.EPROTO, new byte[0], e.getMessage());
            return false;
        }
        received += Mpa.RR_HDR + rep.privateData().length;
        if (rep.rejected()) {
            failConnect(Errno.ECONNREFUSED, rep.privateData(), "rejected by the peer");
            return false;
        }
        boolean waiting = qp.hw.establish();
        established = true;
        if (waiting) {
            dev.tx.kick(qp);
        }
        reply(null, rep.privateData());
        return true;
    }

    private void reply(Errno status, byte[] pd) {
        replied = true;
        event(IwCmEvent.Type.CONNECT_REPLY, status, pd, null);
    }

    /**
     * The active side's attempt failed: the QP is unbound (it may connect again) before CONNECT_REPLY tells the
     * caller so, with {@code status} and the peer's private data.
     */
    private void failConnect(Errno status, byte[] pd, String why) {
        failure = status;
        failurePd = pd;
        lost(why, false);
    }

    /** Passive: the MPA request, CONNECT_REQUEST, then the consumer's answer ({@code siw_proc_mpareq}). */
    private boolean waitForAnswer() throws IOException {
        Mpa.Frame req;
        try {
            req = Mpa.read(ch, false);
        } catch (ErrnoException e) {
            LOG.debug("siw: MPA request from {} refused", remote, e);
            lost(e.getMessage(), false);
            return false;
        }
        received += Mpa.RR_HDR + req.privateData().length;
        event(IwCmEvent.Type.CONNECT_REQUEST, null, req.privateData(), this);
        boolean accepted;
        try {
            accepted = answer.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            lost("interrupted while waiting for an answer", false);
            return false;
        } catch (ExecutionException e) {
            LOG.error("siw: the answer to {} failed", remote, e.getCause());
            lost(String.valueOf(e.getCause()), false);
            return false;
        }
        if (!accepted) {
            lost("rejected", false);
            return false;
        }
        return !gone.get();
    }

    @Override
    public synchronized IwConnection accept(int qpn, IwConnParam p, IwCmHandler h) {
        ErrnoException.requireNonNull(p, "siw: accept parameters");
        ErrnoException.requireNonNull(h, "siw: accept handler");
        if (active || answer.isDone()) {
            throw new ErrnoException(Errno.EINVAL, "siw: the request from " + remote + " was answered already");
        }
        SiwQp q = dev.bindQp(qpn, this);
        handler = h;
        ord = Math.max(1, p.ord());
        boolean waiting;
        try {
            write(Mpa.frame(true, false, p.privateData()));
            // siw_accept moves the QP to RTS with the reply; the peer's first FPDU is read only once this answer
            // is in (the endpoint's thread waits for it), so it finds the QP in RTS, and nothing of ours leaves
            // before the reply: the TX thread sends only on an established connection
            waiting = q.hw.establish();
        } catch (IOException | RuntimeException e) {
            answer.complete(false);
            dev.unbindQp(q, this);
            throw new ErrnoException(e instanceof ErrnoException x ? x.errno() : Errno.ECONNRESET,
                    "siw: accept of " + remote + " failed: " + e.getMessage(), e);
        }
        established = true;
        if (waiting) {
            dev.tx.kick(q);
        }
        answer.complete(true);
        event(IwCmEvent.Type.ESTABLISHED, null, new byte[0], null);
        return this;
    }

    @Override
    public synchronized void reject(byte[] privateData) {
        byte[] pd = privateData == null ? new byte[0] : privateData;
        if (pd.length > Mpa.MAX_PRIVATE_DATA) {
            throw new ErrnoException(Errno.EINVAL, "siw: reject private data of " + pd.length + " bytes exceeds "
                    + Mpa.MAX_PRIVATE_DATA);
        }
        if (active || answer.isDone()) {
            throw new ErrnoException(Errno.EINVAL, "siw: the request from " + remote + " was answered already");
        }
        try {
            write(Mpa.frame(true, true, pd));
        } catch (IOException e) {
            LOG.debug("siw: the reject to {} was not delivered", remote, e);
        }
        answer.complete(false);
    }

    @Override
    public void disconnect() {
        lost("disconnected locally", false);
    }

    /** Writes an MPA start-up frame (the TX thread does not use the stream yet). */
    private void write(byte[] frame) throws IOException {
        dev.captureData(this, frame, 0, frame.length);
        ByteBuffer b = ByteBuffer.wrap(frame);
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    /** A connect refused before it started (its caller got the errno): closed without an event. */
    void abandon(String why) {
        replied = true;
        lost(why, false);
    }

    /** The peer sent a TERMINATE or closed its half: it is gone, whatever we still had to say. */
    void peerGone() {
        peerClosed = true;
    }

    /**
     * The stream is over: closed, the QP in ERR (its outstanding work flushed), DISCONNECT when the peer ended it,
     * then CLOSE. Idempotent.
     */
    void lost(String why, boolean byPeer) {
        if (!gone.compareAndSet(false, true)) {
            return;
        }
        LOG.debug("siw: connection {} -> {} ends: {}", local, remote, why);
        answer.complete(false);
        dev.captureFin(this);
        try {
            ch.close();
        } catch (IOException e) {
            LOG.error("siw: closing the socket {} -> {} failed", local, remote, e);
        }
        SiwQp q = qp;
        boolean was = established;
        if (q != null) {
            if (was) {
                q.connectionGone(this);
            } else {
                dev.unbindQp(q, this); // a connect that failed leaves the QP as it was
            }
        }
        dev.forget(this);
        if (!was && active && !replied) {
            reply(failure, failurePd); // after the unbind: the caller may connect the QP again at once
        }
        if (was) {
            if (byPeer || peerClosed) {
                event(IwCmEvent.Type.DISCONNECT, Errno.ECONNRESET, new byte[0], null);
            }
            event(IwCmEvent.Type.CLOSE, null, new byte[0], null);
        }
    }

    boolean isGone() {
        return gone.get();
    }

    /** Whether the MPA exchange completed: only then may the TX thread use the stream. */
    boolean isEstablished() {
        return established;
    }

    private void event(IwCmEvent.Type type, Errno status, byte[] pd, IwConnRequest req) {
        IwCmHandler h = handler;
        if (h == null) {
            return;
        }
        try {
            h.event(new IwCmEvent(type, status, local, remote, pd, 0, 0, req));
        } catch (RuntimeException e) {
            LOG.error("siw: the handler of {} -> {} failed on {}", local, remote, type, e);
        }
    }

    /** Waits for the endpoint's thread (not from that thread). */
    void join() {
        Thread t;
        synchronized (this) {
            t = thread;
        }
        if (t == null || t == Thread.currentThread()) {
            return;
        }
        try {
            if (!t.join(JOIN)) {
                LOG.error("siw: the thread of {} -> {} did not end within {}", local, remote, JOIN);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
