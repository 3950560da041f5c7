package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.perftest.Perftest.Far;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.QpType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.PrintStream;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.perftest.Perftest.*;

/**
 * perftest between two processes ({@code perftest_communication.c}, {@code perftest_parameters.c}): the server, run
 * with no host, listens on {@code -p} (default {@value #DEFAULT_PORT}); the client names it. The client sends its
 * command line, so both ends run the same test with the same options; each brings up its HCA ({@code -d}) on
 * RoCEv2 over UDP at its own IPv4 address (its GID), creates its QPs and memory, and the two exchange addresses,
 * QPNs and rkeys out of band ({@link Oob}) before they connect their RC QPs and run. For each size the client asks
 * the server to prepare, runs its half, and asks the server for its half of the byte check: the target buffers of
 * WRITE, SEND and atomics are checked where they are, on the server, and its verdict is the client's. Only the
 * client prints rows, each as it is measured.
 *
 * <p>The GID: {@code --ip} when given; otherwise the address the end has on the out-of-band connection, except on
 * the loopback, where both ends would share 127.0.0.1: there the server takes {@value #SERVER_LOOPBACK} and the client
 * {@value #CLIENT_LOOPBACK}.
 */
final class Wire {
    private static final Logger LOG = LoggerFactory.getLogger(Wire.class);
    /** perftest's default port for the out-of-band exchange ({@code DEF_PORT}). */
    static final int DEFAULT_PORT = 18515;
    /** The server's GID on the loopback when none is given. */
    static final String SERVER_LOOPBACK = "127.0.0.11";
    /** The client's GID on the loopback when none is given. */
    static final String CLIENT_LOOPBACK = "127.0.0.12";
    /**
     * The local ACK timeout between processes: 4.096 µs * 2^17, about 0.54 s, where perftest's default 14 (67 ms)
     * would let a JVM of a loaded machine stopping eight times in a row end a healthy QP in RETRY_EXC_ERR; a dead
     * peer is seen after retry_cnt 7 + 1 timeouts, about 4.3 s.
     */
    static final int TIMEOUT = 17;

    private Wire() {
    }

    /**
     * What makes a run one between processes: the server's host for the client (null: this is the server), the
     * port, the HCA, this end's RoCEv2 address (null: derived) and the capture file of what this end's HCA sends
     * (null: none).
     */
    record Options(String host, int port, String device, InetAddress ip, Path pcap) {
        boolean server() {
            return host == null;
        }
    }

    /** An HCA of this process brought up on UDP: the machine it is on, the RDMA core it registered with. */
    interface Station extends AutoCloseable {
        Machine machine();

        RdmaCore core();

        /**
         * Writes every frame this station's HCA sends from now on to {@code file}, as it is on the wire (the driver's
         * {@code pcap} command), until the station closes.
         *
         * @return what is captured, and where
         * @throws ErrnoException {@code EOPNOTSUPP} from a station that cannot capture; the driver's errors
         */
        default String pcap(Path file) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "perftest: this station cannot capture to " + file);
        }

        @Override
        void close();
    }

    /** Brings up HCAs on UDP: Soft-RoCE on a machine of this process's own ({@link Standalone}). */
    interface Stations {
        /**
         * @throws ErrnoException {@code ENODEV} naming {@code device} when there is no such HCA
         */
        void check(String device);

        /** Brings {@code device} up with RoCEv2 over UDP at {@code ip}. */
        Station up(String device, InetAddress ip);
    }

    /** The other process's end, as its {@code ADDR} line told it. */
    record Peer(Gid gid, long buf, long region, int rkey, boolean sharedRq, int[] qpns, int[] psns) implements Far {
        @Override
        public long src(int q) {
            return buf + 2L * q * region;
        }

        @Override
        public long dst(int q) {
            return src(q) + region;
        }

        @Override
        public int qpn(int q) {
            return qpns[q];
        }

        @Override
        public int psn(int q) {
            return psns[q];
        }

        static String line(Side s) {
            StringBuilder b = new StringBuilder("ADDR ").append(s.gid.toInetAddress().getHostAddress()).append(' ')
                    .append(s.buf).append(' ').append(s.region).append(' ').append(s.mr.rkey()).append(' ')
                    .append(s.srq != null).append(' ');
            for (int q = 0; q < s.qps.length; q++) {
                b.append(q == 0 ? "" : ",").append(s.qps[q].qpNum());
            }
            b.append(' ');
            for (int q = 0; q < s.qps.length; q++) {
                b.append(q == 0 ? "" : ",").append(s.psn(q));
            }
            return b.toString();
        }

        /**
         * @throws ErrnoException {@code EPROTO} for a line that is not an address of {@code qps} QPs
         */
        static Peer parse(String line, int qps) {
            String[] w = line.split(" ");
            try {
                if (w.length != 8 || !w[0].equals("ADDR")) {
                    throw new IllegalArgumentException("not ADDR and seven fields");
                }
                int[] qpns = Arrays.stream(w[6].split(",")).mapToInt(Integer::parseInt).toArray();
                int[] psns = Arrays.stream(w[7].split(",")).mapToInt(Integer::parseInt).toArray();
                if (qpns.length != qps || psns.length != qps) {
                    throw new IllegalArgumentException(qpns.length + " QPs and " + psns.length + " PSNs, not " + qps);
                }
                for (int psn : psns) {
                    if (psn < 0 || psn > 0xffffff) {
                        throw new IllegalArgumentException("PSN " + psn + " is not 24 bits");
                    }
                }
                return new Peer(Gid.of(InetAddress.getByName(w[1])), Long.parseLong(w[2]), Long.parseLong(w[3]),
                        Integer.parseInt(w[4]), Boolean.parseBoolean(w[5]), qpns, psns);
            } catch (IllegalArgumentException | UnknownHostException e) {
                throw new ErrnoException(Errno.EPROTO, "perftest: bad address from the other end '" + line + "': "
                        + e.getMessage(), e);
            }
        }
    }

    /**
     * {@code --pcap FILE}: this end's HCA writes what it sends to {@code FILE} before any of its packets leaves (its
     * QPs exist, nothing is connected yet); the other end's frames are in its own capture.
     */
    private static void capture(Station st, Options o, PrintStream out) {
        if (o.pcap() != null) {
            out.println(st.pcap(o.pcap()));
        }
    }

    /** What between processes does not do: refused before anything is set up. */
    static void refuse(PerfConfig cfg) {
        if (cfg.connection() != QpType.RC) {
            throw new ErrnoException(Errno.EINVAL, "perftest: -c " + cfg.connection() + " between processes: only RC"
                    + " (an unreliable receiver's receives cannot be credited to the sender across processes)");
        }
        if (cfg.bidirectional()) {
            throw new ErrnoException(Errno.EINVAL, "perftest: -b between processes is not supported");
        }
    }

    /** The client: connects to the server, runs, prints the header and each row as it is measured. */
    static PerfResult client(PerfConfig cfg, Options o, List<String> args, Stations stations, PrintStream out) {
        refuse(cfg);
        stations.check(o.device());
        try (Oob oob = TcpOob.connect(o.host(), o.port())) {
            oob.send("ARGS\t" + String.join("\t", args));
            InetAddress ip = gid(o, oob, CLIENT_LOOPBACK);
            try (Station st = stations.up(o.device(), ip);
                 Side c = new Side(st.machine(), st.core(), o.device(), cfg, region(cfg), Header.psns())) {
                capture(st, o, out);
                boolean cm = iwarp(st, o, cfg) || cfg.rdmaCm(); // c.viaCm, iWARP checked
                if (cm) { // rdma_cm_client_connection: one connection per QP to where the server listens
                    c.cm = CmConnect.connect(st.core(), c, cmAddress(expect(oob, "CM ")));
                }
                // with the rdma_cm the QPs are made on the ids: their numbers are known once connected
                oob.send(Peer.line(c));
                Peer s = Peer.parse(expect(oob, "ADDR"), cfg.qps());
                for (int q = 0; q < cfg.qps() && !cm; q++) {
                    connect(c.qps[q], c.psn(q), s, q, c.ctx, cfg.connection(), TIMEOUT);
                }
                oob.send("RTS");
                expect(oob, "RTS");
                StringBuilder report = new StringBuilder(header(cfg, c, s, o));
                out.print(report);
                List<PerfResult.Row> rows = new ArrayList<>();
                for (int size : cfg.sizes()) {
                    PerfConfig one = cfg.withSize(size);
                    oob.send("SIZE " + size);
                    expect(oob, "GO");
                    PerfResult.Row row = clientSize(one, c, s, oob);
                    rows.add(row);
                    StringBuilder lines = new StringBuilder();
                    if (row instanceof PerfResult.Lat lat) {
                        samples(cfg, lat, lines);
                    }
                    lines.append(format(cfg, row)).append('\n');
                    out.print(lines);
                    out.flush();
                    report.append(lines);
                }
                oob.send("BYE");
                LOG.debug("perftest: {} counters {}", o.device(), st.core().device(o.device()).map(d -> d.hwCounters(1)));
                out.println(LINE);
                report.append(LINE).append('\n');
                return new PerfResult(cfg, List.copyOf(rows), report.toString());
            } catch (RuntimeException e) {
                tell(oob, e);
                throw e;
            }
        }
    }

    /** The server: waits for one client, runs its half of the test it asks for, prints the header. */
    static void server(PerfConfig mine, Options o, Stations stations, PrintStream out) {
        refuse(mine);
        stations.check(o.device());
        try (TcpOob.Listener l = new TcpOob.Listener(o.port())) {
            out.println("\n************************************\n* Waiting for client to connect... *\n"
                    + "************************************");
            out.flush();
            try (Oob oob = l.accept()) {
                try {
                    serve(mine, o, stations, oob, out);
                } catch (RuntimeException e) {
                    tell(oob, e);
                    throw e;
                }
            }
        }
    }

    private static void serve(PerfConfig mine, Options o, Stations stations, Oob oob, PrintStream out) {
        String argsLine = expect(oob, "ARGS");
        PerfConfig cfg = PerfCli.parseAny(argsLine.substring("ARGS\t".length()).split("\t"));
        if (cfg.test() != mine.test()) {
            throw new ErrnoException(Errno.EINVAL, "perftest: the client runs " + cfg.test().tool + ", this server "
                    + mine.test().tool);
        }
        refuse(cfg);
        InetAddress ip = gid(o, oob, SERVER_LOOPBACK);
        try (Station st = stations.up(o.device(), ip);
             Side s = new Side(st.machine(), st.core(), o.device(), cfg, region(cfg), Header.psns())) {
            capture(st, o, out);
            boolean cm = iwarp(st, o, cfg) || cfg.rdmaCm(); // s.viaCm, iWARP checked
            if (cm) { // rdma_cm_server_connection: listen, tell the client where, accept one per QP
                s.cm = CmConnect.listen(st.core(), s);
                oob.send("CM " + s.cm.address().getAddress().getHostAddress() + " " + s.cm.address().getPort());
                s.cm.accept();
            }
            Peer c = Peer.parse(expect(oob, "ADDR"), cfg.qps());
            oob.send(Peer.line(s));
            for (int q = 0; q < cfg.qps() && !cm; q++) {
                connect(s.qps[q], s.psn(q), c, q, s.ctx, cfg.connection(), TIMEOUT);
            }
            expect(oob, "RTS");
            oob.send("RTS");
            out.print(header(cfg, s, c, o));
            out.flush();
            String line;
            while (!(line = expect(oob, "")).equals("BYE")) {
                if (!line.startsWith("SIZE ")) {
                    throw new ErrnoException(Errno.EPROTO, "perftest: expected SIZE or BYE from the client, got '"
                            + line + "'");
                }
                PerfConfig one = cfg.withSize(Integer.parseInt(line.substring(5)));
                ServerSize part = new ServerSize(one, s, c);
                oob.send("GO");
                String end;
                try {
                    end = expect(oob, "END ");
                } catch (RuntimeException e) {
                    part.abort();
                    throw e;
                }
                part.finish(end.substring(4));
                oob.send("OK");
            }
            LOG.debug("perftest: {} counters {}", o.device(), st.core().device(o.device()).map(d -> d.hwCounters(1)));
            out.println(LINE);
        }
    }

    /** The client's half of one size: its transfers and its byte check; the server's verdict asked for with END. */
    private static PerfResult.Row clientSize(PerfConfig one, Side c, Peer s, Oob oob) {
        int size = one.size();
        switch (one.test()) {
            case WRITE_BW, READ_BW, SEND_BW, ATOMIC_BW -> {
                byte[][] pattern = Bandwidth.patterns(one, s.sharedRq());
                Bandwidth.Flow f = Bandwidth.flow(one, c, s, null, pattern);
                Bandwidth.verifyInitiator(one, c, pattern);
                end(oob, join(f.completed()));
                return f.row(one);
            }
            case WRITE_LAT -> {
                Latency.prepare(c, Latency.clientPattern(one), size);
                Latency.Ping ping = new Latency.Ping(one);
                long i = Latency.writePing(one, c, s, ping);
                end(oob, String.valueOf(i));
                Latency.checkLast(one, c, Latency.serverPattern(one), i, "target buffer on " + c.name);
                return ping.stats(size);
            }
            case SEND_LAT -> {
                Latency.prepareSend(c, Latency.clientPattern(one));
                Latency.Ping ping = new Latency.Ping(one);
                Latency.sendPing(one, c, s, ping);
                end(oob, "0");
                same(one, 0, Latency.serverPattern(one), c.read(c.dst(0), size), "receive buffer on " + c.name);
                return ping.stats(size);
            }
            case READ_LAT -> {
                Latency.Ping ping = new Latency.Ping(one);
                Latency.reads(one, c, s, ping);
                end(oob, "0");
                same(one, 0, Latency.serverPattern(one), c.read(c.dst(0), size), "read buffer on " + c.name);
                return ping.stats(size);
            }
            case ATOMIC_LAT -> {
                Latency.Ping ping = new Latency.Ping(one);
                long done = Latency.atomics(one, c, s, ping);
                end(oob, String.valueOf(done));
                return ping.stats(8);
            }
        }
        throw new IllegalStateException("no client for " + one.test());
    }

    /** Tells the server the client's part of a size ended, and takes its byte check's verdict. */
    private static void end(Oob oob, String what) {
        oob.send("END " + what);
        expect(oob, "OK");
    }

    private static String join(long[] v) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < v.length; i++) {
            b.append(i == 0 ? "" : ",").append(v[i]);
        }
        return b.toString();
    }

    /**
     * The next line from the other end, which must start with {@code prefix}; an {@code ERROR} line is the other
     * end's failure, raised here with its errno and message.
     */
    static String expect(Oob oob, String prefix) {
        String l = oob.receive();
        if (l == null) {
            throw new ErrnoException(Errno.ECONNRESET, "perftest: the other end closed the connection");
        }
        if (l.startsWith("ERROR ")) {
            String[] w = l.split(" ", 3);
            Errno e = Arrays.stream(Errno.values()).filter(x -> x.name().equals(w[1])).findFirst().orElse(Errno.EIO);
            throw new ErrnoException(e, w.length > 2 ? w[2] : l);
        }
        if (!l.startsWith(prefix)) {
            throw new ErrnoException(Errno.EPROTO, "perftest: expected " + prefix.strip() + " from the other end, got '"
                    + l + "'");
        }
        return l;
    }

    /** Tells the other end why this one stops, if the channel still works. */
    private static void tell(Oob oob, RuntimeException e) {
        Errno errno = e instanceof ErrnoException x ? x.errno() : Errno.EIO;
        if (!(e instanceof ErrnoException)) {
            LOG.error("perftest: unexpected failure", e);
        }
        String msg = String.valueOf(e.getMessage()).replace('\n', ' ');
        try {
            oob.send("ERROR " + errno.name() + " " + msg);
        } catch (ErrnoException gone) {
            e.addSuppressed(gone);
        }
    }

    /**
     * Whether this end's device is iWARP, whose QPs connect through the rdma_cm ({@link CmConnect}); the tests it
     * cannot carry are refused ({@link Perftest#checkIwarp}).
     */
    private static boolean iwarp(Station st, Options o, PerfConfig cfg) {
        RdmaDevice d = st.core().device(o.device()).orElseThrow(() -> new ErrnoException(Errno.ENODEV,
                "perftest: no RDMA device " + o.device()));
        if (d.nodeType().transport() != NodeType.Transport.IWARP) {
            return false;
        }
        checkIwarp(cfg, d);
        return true;
    }

    /** This end's GID: {@code --ip}, or the address it has on the channel ({@code loopback} on the loopback). */
    /**
     * The address in the server's {@code CM <address> <port>} line: where it listens.
     *
     * @throws ErrnoException {@code EPROTO} for a line that is not one
     */
    private static InetSocketAddress cmAddress(String line) {
        String[] w = line.split(" ");
        try {
            if (w.length != 3) {
                throw new IllegalArgumentException("not CM, an address and a port");
            }
            return new InetSocketAddress(InetAddress.getByName(w[1]), Integer.parseInt(w[2]));
        } catch (IllegalArgumentException | UnknownHostException e) {
            throw new ErrnoException(Errno.EPROTO, "perftest: bad rdma_cm address from the server '" + line + "': "
                    + e.getMessage(), e);
        }
    }

    private static InetAddress gid(Options o, Oob oob, String loopback) {
        if (o.ip() != null) {
            return o.ip();
        }
        InetAddress a = oob.localAddress();
        try {
            if (a.isLoopbackAddress()) {
                return InetAddress.getByName(loopback);
            }
        } catch (UnknownHostException e) {
            throw new IllegalStateException(e);
        }
        if (!(a instanceof Inet4Address)) {
            throw new ErrnoException(Errno.EINVAL, "perftest: this end's address " + a.getHostAddress()
                    + " is not IPv4: give the RoCEv2 address with --ip");
        }
        return a;
    }

    private static long region(PerfConfig cfg) {
        int maxSize = cfg.sizes().stream().mapToInt(Integer::intValue).max().orElseThrow();
        return roundUp(Math.max(maxSize, 64), 4096);
    }

    /** perftest's header with its address lines ({@code ctx_print_pingpong_data}): this end, then the other. */
    private static String header(PerfConfig cfg, Side me, Peer other, Options o) {
        String device = o.device() + (o.server() ? " (server)" : " -> " + o.host());
        return Header.info(cfg, device, me, o.server() ? Header.Role.SERVER : Header.Role.CLIENT)
                + Header.addresses(cfg, me, other) + LINE + "\n" + columns(cfg) + "\n";
    }
}
