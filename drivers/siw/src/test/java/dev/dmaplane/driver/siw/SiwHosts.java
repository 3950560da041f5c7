package dev.dmaplane.driver.siw;

import dev.dmaplane.device.Device;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.testing.Verbs;
import dev.dmaplane.rdma.spi.IwCm;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwConnection;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.ExternalTool;
import dev.dmaplane.testing.Loopback;
import dev.dmaplane.testing.TestMachines;

import java.io.DataInputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * Two machines, as two hosts would be, each with its RDMA core and the siw driver attached to its Ethernet function
 * 0000:04:00.0 ({@code rdma link add siw0 type siw netdev eth4}: {@code driver_override} and a bind) at
 * {@code 127.0.0.<a>} and {@code 127.0.0.<b>}: nothing joins them but the loopback's TCP. One application
 * ({@link Host}) on each, and the steps rdma_cm takes for an iWARP connection ({@code cma_connect_iw},
 * {@code cma_accept_iw}): the QP to INIT with remote read and write, to RTR, then connect and accept through the
 * device's {@link IwCm}.
 */
final class SiwHosts implements AutoCloseable {
    static final String BDF = "0000:04:00.0";
    static final Duration WAIT = Duration.ofSeconds(10);
    static final long BUF = 4L << 20;
    static final int ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
    /** The length on the wire of one RDMA Read Request FPDU (MPA length, headers, body, CRC). */
    static final int READ_REQUEST_FPDU = Mpa.fpduLength(Iwarp.UNTAGGED_HDR + Iwarp.READ_REQUEST_BODY);

    final Machine ma = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    final Machine mb = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    final RdmaCore ca = new RdmaCore(ma.tracer());
    final RdmaCore cb = new RdmaCore(mb.tracer());
    final SiwDriver da;
    final SiwDriver db;
    final Host a;
    final Host b;

    SiwHosts(int a, int b) {
        da = new SiwDriver(ca, Map.of(BDF, loopback(a)));
        db = new SiwDriver(cb, Map.of(BDF, loopback(b)));
        linkAdd(ma, da);
        linkAdd(mb, db);
        this.a = new Host(ma, ca, da, "siw0");
        this.b = new Host(mb, cb, db, "siw0");
    }

    /** {@code rdma link add siw0 type siw netdev eth4}: siw takes the Ethernet function at {@link #BDF}. */
    static void linkAdd(Machine m, SiwDriver d) {
        m.devices().registerDriver(d);
        Device fn = m.devices().findDevice(BDF).orElseThrow();
        m.devices().setDriverOverride(fn, SiwDriver.NAME);
        m.devices().bind(fn, d);
    }

    static InetAddress loopback(int host) {
        return Loopback.address(host);
    }

    /** An application on {@code dev}: address space, context, PD, CQ, a registered buffer. */
    static final class Host {
        final AddressSpace mm;
        final VerbsContext ctx;
        final ProtectionDomain pd;
        final CompletionQueue cq;
        final long buf;
        final MemoryRegion mr;
        final IwCm cm;
        final InetAddress address;
        final LinkedBlockingQueue<IwCmEvent> events = new LinkedBlockingQueue<>();

        Host(Machine machine, RdmaCore core, SiwDriver driver, String dev) {
            mm = machine.newAddressSpace("app-" + dev);
            ctx = core.device(dev).orElseThrow().open(mm);
            pd = ctx.allocPd();
            cq = ctx.createCq(4096, null, 0);
            buf = mm.mmapAnonymous(BUF, Prot.PROT_READ | Prot.PROT_WRITE);
            mr = pd.regMr(buf, BUF, ALL);
            SiwProvider p = driver.providers.get(dev);
            cm = p.iwCm().orElseThrow();
            address = p.address();
        }

        Sge sge(long off, long len) {
            return new Sge(buf + off, len, mr.lkey());
        }

        void write(long off, byte[] bytes) {
            mm.write(buf + off, MemorySegment.ofArray(bytes));
        }

        byte[] read(long off, int len) {
            byte[] r = new byte[len];
            mm.read(buf + off, MemorySegment.ofArray(r));
            return r;
        }

        /**
         * An RC QP moved as rdma_cm moves an iWARP QP before connect or accept: INIT with access, then RTR, which siw
         * takes and ignores (its QP stays IDLE, INIT to a query: {@code siw_qp_nextstate_from_idle}).
         */
        QueuePair rc() {
            return rc(new QpCap(256, 256, 6, 6, 64));
        }

        /** {@link #rc()} with the capabilities {@code cap}. */
        QueuePair rc(QpCap cap) {
            QueuePair q = pd.createQp(new QpInitAttr(cq, cq, null, cap, QpType.RC, false));
            q.modify(QpAttr.builder().state(QpState.INIT).accessFlags(ALL).build());
            q.modify(QpAttr.builder().state(QpState.RTR).build());
            return q;
        }

        /** The next CM event, waited for at most {@link #WAIT}. */
        IwCmEvent event() {
            try {
                IwCmEvent e = events.poll(WAIT.toMillis(), TimeUnit.MILLISECONDS);
                if (e == null) {
                    throw new AssertionError("no CM event within " + WAIT);
                }
                return e;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError(e);
            }
        }

        AsyncEvent asyncEvent() {
            return Verbs.event(ctx, WAIT);
        }
    }

    /** An RC pair a ↔ b connected through the CMs, with private data both ways. */
    QueuePair[] pair() {
        return pair(a.rc(), b.rc());
    }

    /** {@link #pair()} of {@code qa} on a and {@code qb} on b, each made by {@link Host#rc}. */
    QueuePair[] pair(QueuePair qa, QueuePair qb) {
        try (IwListen l = b.cm.listen(new InetSocketAddress(b.address, 0), 4, b.events::add)) {
            a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(new byte[]{1, 2, 3}, 16, 16), a.events::add);
            IwCmEvent req = b.event();
            if (req.type() != IwCmEvent.Type.CONNECT_REQUEST) {
                throw new AssertionError("expected a connect request, got " + req);
            }
            req.request().accept(qb.qpNum(), new IwConnParam(new byte[]{4, 5}, 16, 16), b.events::add);
            expect(b.event(), IwCmEvent.Type.ESTABLISHED);
            expect(a.event(), IwCmEvent.Type.CONNECT_REPLY);
        }
        return new QueuePair[]{qa, qb};
    }

    /** {@code ibv_modify_qp} of {@code q} to state {@code s}, nothing else in the mask. */
    static void modify(QueuePair q, QpState s) {
        q.modify(QpAttr.builder().state(s).build());
    }

    /**
     * A raw responder on b's address: a connects {@code qa} to it with {@code param}, it reads siw's revision 2
     * request, answers with {@code reply} (recorded in a's capture first, when one is on, so that the capture holds
     * both directions) and hands back the bytes that follow until siw closes the stream.
     */
    byte[] respondRaw(QueuePair qa, IwConnParam param, byte[] reply) throws IOException {
        try (ServerSocket server = new ServerSocket(0, 1, b.address)) {
            a.cm.connect(qa.qpNum(), (InetSocketAddress) server.getLocalSocketAddress(), param, a.events::add);
            try (Socket s = server.accept()) {
                s.setSoTimeout((int) WAIT.toMillis());
                DataInputStream in = new DataInputStream(s.getInputStream());
                byte[] req = new byte[Mpa.RR_HDR + Mpa.V2_DATA];
                in.readFully(req);
                TcpCapture cap = da.providers.get("siw0").capture;
                if (cap != null) {
                    InetSocketAddress me = (InetSocketAddress) s.getLocalSocketAddress();
                    InetSocketAddress them = (InetSocketAddress) s.getRemoteSocketAddress();
                    cap.segment(me, them, TcpCapture.isn(me, them) + 1, TcpCapture.isn(them, me) + 1 + req.length,
                            TcpCapture.PSH | TcpCapture.ACK, reply, 0, reply.length);
                }
                s.getOutputStream().write(reply);
                return in.readAllBytes();
            }
        }
    }

    /**
     * A raw responder on b's address that a's QP {@code qa} connects to: it reads siw's MPA v2 request and answers
     * with IRD and ORD 8; the socket is handed back with {@code qa} in RTS (CONNECT_REPLY seen). It reads nothing
     * more unless the test does.
     */
    Socket rawPeer(ServerSocket server, QueuePair qa) throws IOException {
        a.cm.connect(qa.qpNum(), (InetSocketAddress) server.getLocalSocketAddress(), new IwConnParam(null, 8, 8),
                a.events::add);
        Socket s = server.accept();
        s.setSoTimeout((int) WAIT.toMillis());
        new DataInputStream(s.getInputStream()).readFully(new byte[Mpa.RR_HDR + Mpa.V2_DATA]);
        s.getOutputStream().write(Mpa.frame(true, false, Mpa.REVISION_2, new Mpa.V2(8, 8, false, 0), new byte[0]));
        expect(a.event(), IwCmEvent.Type.CONNECT_REPLY);
        if (qa.query().qpState() != QpState.RTS) {
            throw new AssertionError("qp " + qa.qpNum() + " is not in RTS after CONNECT_REPLY");
        }
        return s;
    }

    static IwCmEvent expect(IwCmEvent e, IwCmEvent.Type type) {
        if (e.type() != type || e.status() != null) {
            throw new AssertionError("expected " + type + " with success, got " + e.type() + " " + e.status());
        }
        return e;
    }

    static List<WorkCompletion> poll(CompletionQueue cq, int n) {
        return Verbs.poll(cq, n, WAIT);
    }

    static WorkCompletion one(CompletionQueue cq) {
        return poll(cq, 1).getFirst();
    }

    /** Hardware counter {@code name} of driver {@code d}'s siw0, port 1 ({@code rdma statistic}). */
    static long counter(SiwDriver d, String name) {
        return d.providers.get("siw0").hwCounters(1).get(name);
    }

    static byte[] random(int n, long seed) {
        byte[] r = new byte[n];
        new Random(seed).nextBytes(r);
        return r;
    }

    /** Wireshark's tshark, the capture tests' oracle: skipped without it, failing where CI requires it. */
    static ExternalTool tshark() {
        return ExternalTool.require("tshark",
                "apt-get install tshark (Debian, Ubuntu), dnf install wireshark-cli (Fedora)");
    }

    /**
     * Turns device a's {@code siw:pcap} on into {@code file} and has device b write into the same capture, as two
     * hosts' captures merged ({@code mergecap}); {@code da.pcap("off")} closes it.
     */
    void captureBoth(Path file) {
        String on = da.pcap(file.toString());
        if (!on.startsWith("capturing to ")) {
            throw new IllegalStateException("siw:pcap " + file + " answered " + on);
        }
        db.providers.get("siw0").capture = da.providers.get("siw0").capture;
    }

    static long siwThreads() {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith("siw-") && t.isAlive()).count();
    }

    @Override
    public void close() {
        try {
            close(a, ma, ca, da);
        } finally {
            close(b, mb, cb, db);
        }
    }

    private static void close(Host h, Machine m, RdmaCore core, SiwDriver d) {
        h.ctx.close();
        if (m.devices().drivers().contains(d)) {
            m.devices().unregisterDriver(d);
        }
        d.deactivate();
        core.close();
        if (!h.mm.isClosed()) {
            h.mm.close();
        }
        m.close();
    }
}
