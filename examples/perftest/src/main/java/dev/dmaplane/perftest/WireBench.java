package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.channels.DatagramChannel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.IntSupplier;
import java.util.function.ToDoubleFunction;

/**
 * docs/BENCHMARKS.md "RoCEv2 between processes" and "siw between processes" in one command
 * ({@code perf wire-bench [RUNS] [SECS]}): per run, a plain Java UDP loopback throughput of 64 KiB messages
 * ({@link DatagramChannel}, a sender and a receiver thread, each message as one 65,507-byte datagram, the largest UDP
 * allows, and as sixteen 4 KiB datagrams, the RoCEv2 path MTU), a UDP ping-pong of 8 bytes, then
 * {@code write_bw -s 65536} and {@code write_lat -s 8} between two forked JVMs over RoCEv2 ({@link Wire}); a plain
 * Java TCP loopback throughput of 64 KiB messages ({@link SocketChannel}, a sender and a receiver thread) and
 * {@code write_bw -s 65536 -d siw0} between two forked JVMs over iWARP; and the ratios of the same run. The
 * addresses are a 127.X.Y.0/24 of this process (from its process ID), so that runs of several users of one machine
 * never share UDP port 4791.
 */
final class WireBench {
    /** 64 KiB: the message size of the bandwidth figures. */
    static final int BW_SIZE = 65536;
    /** The largest UDP payload over IPv4 (65,535 less the IP and UDP headers). */
    static final int UDP_MAX = 65507;
    /** The RoCEv2 path MTU: the payload of one packet. */
    static final int MTU = 4096;
    /** Linux rxe's published 64 KiB write_bw, about 1 GB/s, in MB/sec (2^20 bytes) as perftest prints it. */
    static final double RXE_MB = 1e9 / (1 << 20);
    private static final long WAIT_S = 120;
    /** How many ports a server is started on before wire-bench gives up (see {@link #server}). */
    static final int PORT_ATTEMPTS = 3;

    private WireBench() {
    }

    /** {@code wire-bench [RUNS] [SECS]}. */
    @Command(name = "wire-bench", mixinStandardHelpOptions = true, versionProvider = PerfCli.Version.class,
            description = "docs/BENCHMARKS.md's \"RoCEv2 between processes\": UDP baselines and write_bw/write_lat"
                    + " between two JVMs, in one run")
    static final class WireBenchCommand {
        @Parameters(index = "0", arity = "0..1", paramLabel = "RUNS", converter = PerfCli.IntValue.class,
                description = "runs (default 3)")
        int runs = 3;
        @Parameters(index = "1", arity = "0..1", paramLabel = "SECS", converter = PerfCli.IntValue.class,
                description = "seconds measured per figure (default 4; the RDMA runs last twice that, half of it"
                        + " warm-up)")
        int secs = 4;
    }

    /** One run's figures: MB/sec (2^20 bytes) and median half round trips in microseconds. */
    record Figures(double udpBigMb, double udpMtuMb, double udpPingUs, double roceBwMb, double roceLatUs,
                   double tcpMb, double siwBwMb) {
    }

    static void main(int runs, int secs, PrintStream out) {
        if (runs < 1 || secs < 1) {
            throw new ErrnoException(Errno.EINVAL, "perftest: wire-bench needs RUNS and SECS of at least 1, not "
                    + runs + " " + secs);
        }
        out.printf("wire-bench: %d runs of %d s per figure, addresses %s.0/24%n", runs, secs, net());
        List<Figures> all = new ArrayList<>();
        for (int r = 1; r <= runs; r++) {
            double big = udpBandwidth(UDP_MAX, 1, secs);
            double mtu = udpBandwidth(MTU, BW_SIZE / MTU, secs);
            double ping = udpPingPong(8, secs);
            double bw = wire("write_bw", secs, 3, out, "rxe0");
            double lat = wire("write_lat", secs, 4, out, "rxe0");
            double tcp = tcpBandwidth(BW_SIZE, secs);
            double siw = wire("write_bw", secs, 3, out, "siw0");
            Figures f = new Figures(big, mtu, ping, bw, lat, tcp, siw);
            all.add(f);
            out.printf("run %d: udp 64K as 1 datagram %.0f MB/s, as 16 x 4K %.0f MB/s, udp ping-pong 8 B %.2f us;"
                            + " RoCEv2 write_bw 64K %.0f MB/s (x%.2f udp 1 datagram, x%.2f udp 16 x 4K, x%.2f rxe),"
                            + " write_lat 8 B %.2f us (x%.2f udp); tcp 64K %.0f MB/s, siw write_bw 64K %.0f MB/s"
                            + " (x%.2f tcp)%n", r, big, mtu, ping, bw, bw / big, bw / mtu, bw / RXE_MB, lat, lat / ping,
                    tcp, siw, siw / tcp);
            out.flush();
        }
        out.printf("median of %d: RoCEv2 write_bw x%.2f udp 1 datagram, x%.2f udp 16 x 4K, x%.2f rxe; write_lat x%.2f"
                        + " udp ping-pong; siw write_bw x%.2f tcp%n", runs, median(all, f -> f.roceBwMb() / f.udpBigMb()),
                median(all, f -> f.roceBwMb() / f.udpMtuMb()), median(all, f -> f.roceBwMb() / RXE_MB),
                median(all, f -> f.roceLatUs() / f.udpPingUs()), median(all, f -> f.siwBwMb() / f.tcpMb()));
    }

    private static double median(List<Figures> all, ToDoubleFunction<Figures> v) {
        double[] x = all.stream().mapToDouble(v).sorted().toArray();
        return x.length % 2 == 1 ? x[x.length / 2] : (x[x.length / 2 - 1] + x[x.length / 2]) / 2;
    }

    /**
     * MB/sec received over {@code secs}: a thread sends messages of {@code count} datagrams of {@code len} bytes as
     * fast as it can; the receiver counts what arrives (what overflows its socket buffer is lost, not counted).
     */
    static double udpBandwidth(int len, int count, int secs) {
        try (DatagramChannel rx = channel(31); DatagramChannel tx = channel(32)) {
            tx.connect(rx.getLocalAddress());
            AtomicLong stop = new AtomicLong();
            Thread sender = Thread.ofPlatform().name("wire-bench-udp-tx").start(() -> {
                ByteBuffer b = ByteBuffer.allocateDirect(len);
                try {
                    while (stop.get() == 0) {
                        for (int i = 0; i < count; i++) {
                            b.clear();
                            tx.write(b);
                        }
                    }
                } catch (IOException e) {
                    stop.set(-1);
                }
            });
            double mb = receiveRate(len, secs, b -> {
                rx.receive(b);
                return b.position();
            });
            stop.set(1);
            tx.close(); // the sender's next write fails if it is blocked
            join(sender);
            return mb;
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "perftest: wire-bench UDP baseline: " + e.getMessage(), e);
        }
    }

    /**
     * MB/sec received over {@code secs} on a TCP connection of the loopback: a thread writes messages of {@code len}
     * bytes as fast as it can, the receiver reads and counts (the stream loses nothing).
     */
    static double tcpBandwidth(int len, int secs) {
        try (ServerSocketChannel server = ServerSocketChannel.open()) {
            server.bind(new InetSocketAddress(address(35), 0));
            try (SocketChannel tx = SocketChannel.open(server.getLocalAddress());
                 SocketChannel rx = server.accept()) {
                AtomicLong stop = new AtomicLong();
                Thread sender = Thread.ofPlatform().name("wire-bench-tcp-tx").start(() -> {
                    ByteBuffer b = ByteBuffer.allocateDirect(len);
                    try {
                        while (stop.get() == 0) {
                            b.clear();
                            while (b.hasRemaining()) {
                                tx.write(b);
                            }
                        }
                    } catch (IOException e) {
                        stop.set(-1);
                    }
                });
                double mb = receiveRate(len, secs, b -> {
                    int n = rx.read(b);
                    if (n < 0) {
                        throw new ErrnoException(Errno.EIO, "perftest: wire-bench TCP baseline: the sender closed");
                    }
                    return n;
                });
                stop.set(1);
                rx.close(); // the sender's next write fails if it is blocked on a full window
                join(sender);
                return mb;
            }
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "perftest: wire-bench TCP baseline: " + e.getMessage(), e);
        }
    }

    /** One receive into a cleared buffer: the bytes it took. */
    @FunctionalInterface
    private interface Receive {
        int into(ByteBuffer b) throws IOException;
    }

    /** MB/sec that {@code receive} takes over {@code secs}, after a second it runs unmeasured. */
    private static double receiveRate(int len, int secs, Receive receive) throws IOException {
        ByteBuffer b = ByteBuffer.allocateDirect(len);
        long warm = System.nanoTime() + TimeUnit.SECONDS.toNanos(1);
        while (System.nanoTime() < warm) {
            b.clear();
            receive.into(b);
        }
        long bytes = 0;
        long t0 = System.nanoTime();
        long end = t0 + TimeUnit.SECONDS.toNanos(secs);
        long t;
        while ((t = System.nanoTime()) < end) {
            b.clear();
            bytes += receive.into(b);
        }
        return bytes / ((t - t0) / 1e9) / (1 << 20);
    }

    /** The median half round trip in microseconds of {@code len}-byte datagrams between two threads. */
    static double udpPingPong(int len, int secs) {
        try (DatagramChannel a = channel(33); DatagramChannel b = channel(34)) {
            a.connect(b.getLocalAddress());
            b.connect(a.getLocalAddress());
            AtomicLong stop = new AtomicLong();
            Thread pong = Thread.ofPlatform().name("wire-bench-udp-pong").start(() -> {
                ByteBuffer buf = ByteBuffer.allocateDirect(len);
                try {
                    while (true) {
                        buf.clear();
                        b.read(buf);
                        if (stop.get() != 0) {
                            return;
                        }
                        buf.flip();
                        b.write(buf);
                    }
                } catch (IOException e) {
                    stop.set(-1);
                }
            });
            ByteBuffer buf = ByteBuffer.allocateDirect(len);
            long[] rtt = new long[1 << 20];
            int n = 0;
            long warm = System.nanoTime() + TimeUnit.SECONDS.toNanos(1);
            long end = warm + TimeUnit.SECONDS.toNanos(secs);
            long t;
            while ((t = System.nanoTime()) < end && n < rtt.length) {
                buf.clear();
                a.write(buf);
                buf.clear();
                a.read(buf);
                if (t > warm) {
                    rtt[n++] = System.nanoTime() - t;
                }
            }
            stop.set(1);
            buf.clear();
            a.write(buf); // wakes the pong thread, which sees stop
            join(pong);
            long[] s = Arrays.copyOf(rtt, n);
            Arrays.sort(s);
            return s[n / 2] / 2e3;
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "perftest: wire-bench UDP ping-pong: " + e.getMessage(), e);
        }
    }

    private static DatagramChannel channel(int host) throws IOException {
        DatagramChannel c = DatagramChannel.open(StandardProtocolFamily.INET);
        c.setOption(StandardSocketOptions.SO_RCVBUF, 8 << 20);
        c.setOption(StandardSocketOptions.SO_SNDBUF, 8 << 20);
        c.bind(new InetSocketAddress(address(host), 0));
        return c;
    }

    private static void join(Thread t) {
        try {
            if (!t.join(Duration.ofSeconds(WAIT_S))) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: wire-bench thread " + t.getName()
                        + " did not end");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "perftest: wire-bench interrupted");
        }
    }

    /**
     * Runs {@code tool} on {@code device} (rxe0: RoCEv2, siw0: iWARP) between a forked server and a forked client and
     * returns column {@code column} (0-based) of the client's row: write_bw's BW average, write_lat's t_typical. The
     * run lasts {@code 2 * secs} seconds: perftest's duration mode leaves a quarter out at either end, so
     * {@code secs} are measured, after the new JVMs had {@code secs / 2} to compile their hot paths (the baselines
     * run a second unmeasured for the same reason).
     */
    static double wire(String tool, int secs, int column, PrintStream out, String device) {
        String size = tool.equals("write_bw") ? String.valueOf(BW_SIZE) : "8";
        String duration = String.valueOf(2 * secs);
        Server s = null;
        Process c = null;
        try {
            s = server(List.of(tool, "-d", device, "--ip", address(11).getHostAddress(), "-s", size, "-D", duration),
                    WireBench::freePort);
            List<String> client = java(tool, "127.0.0.1", "-p", String.valueOf(s.port()), "-d", device, "--ip",
                    address(12).getHostAddress(), "-s", size, "-D", duration);
            c = new ProcessBuilder(client).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            List<String> lines = new BufferedReader(new InputStreamReader(c.getInputStream(), StandardCharsets.UTF_8))
                    .lines().toList();
            if (!c.waitFor(WAIT_S, TimeUnit.SECONDS) || c.exitValue() != 0) {
                throw new ErrnoException(Errno.EIO, "perftest: wire-bench's " + tool + " client failed:\n"
                        + String.join("\n", lines));
            }
            if (!s.process().waitFor(WAIT_S, TimeUnit.SECONDS) || s.process().exitValue() != 0) {
                throw new ErrnoException(Errno.EIO, "perftest: wire-bench's " + tool + " server failed");
            }
            String row = lines.stream().filter(x -> x.trim().startsWith(size + " ")).findFirst().orElseThrow(
                    () -> new ErrnoException(Errno.EIO, "perftest: no " + size + "-byte row from " + tool + ":\n"
                            + String.join("\n", lines)));
            out.println(device + " " + tool + ":" + row);
            return Double.parseDouble(row.trim().split(" +")[column]);
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "perftest: wire-bench cannot run " + tool + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "perftest: wire-bench interrupted while " + tool + " ran");
        } finally {
            if (c != null) {
                c.destroyForcibly();
            }
            if (s != null) {
                s.process().destroyForcibly();
            }
        }
    }

    /** A forked perftest server that listens on {@code port} for its client's out-of-band exchange. */
    record Server(Process process, int port) {
    }

    /**
     * Forks the perftest server {@code toolArgs} on a port from {@code ports} (free a moment before) and waits until
     * it listens. A server that could not listen there because the kernel handed the port to another socket
     * meanwhile (EADDRINUSE: an ephemeral port) is started again on the next port, {@value #PORT_ATTEMPTS} times in
     * all; any other end before listening is an error naming the server's last words.
     *
     * @throws ErrnoException {@code EIO} when no server listens
     */
    static Server server(List<String> toolArgs, IntSupplier ports) throws IOException, InterruptedException {
        for (int attempt = 1; ; attempt++) {
            int port = ports.getAsInt();
            List<String> cmd = new ArrayList<>(toolArgs);
            cmd.addAll(List.of("-p", String.valueOf(port)));
            Process p = new ProcessBuilder(java(cmd.toArray(String[]::new))).start();
            StringBuffer err = new StringBuffer();
            Thread errCopy = Thread.ofPlatform().daemon().name("wire-bench-server-err").start(() ->
                    new BufferedReader(new InputStreamReader(p.getErrorStream(), StandardCharsets.UTF_8)).lines()
                            .forEach(l -> {
                                System.err.println(l);
                                err.append(l).append('\n');
                            }));
            BufferedReader sr = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
            String l;
            while ((l = sr.readLine()) != null && !l.contains("Waiting for client")) {
                // the banner before it
            }
            if (l != null) {
                Thread.ofPlatform().daemon().name("wire-bench-server-out").start(() -> sr.lines().forEach(x -> { }));
                return new Server(p, port);
            }
            if (!p.waitFor(WAIT_S, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
            errCopy.join(Duration.ofSeconds(WAIT_S));
            if (attempt == PORT_ATTEMPTS || !err.toString().contains("EADDRINUSE")) {
                throw new ErrnoException(Errno.EIO, "perftest: wire-bench's " + String.join(" ", toolArgs)
                        + " server ended before listening on port " + port + ": " + err.toString().strip());
            }
        }
    }

    /** {@code java} with this JVM's options and class path, running {@link Main} with {@code args}. */
    private static List<String> java(String... args) {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command()
                .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName()));
        cmd.addAll(List.of(args));
        return cmd;
    }

    static int freePort() {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "perftest: wire-bench found no free TCP port: " + e.getMessage(), e);
        }
    }

    /** 127.X.Y of this process: X and Y from its process ID, never 127.0.0 (./dmaplane's defaults). */
    private static String net() {
        long pid = ProcessHandle.current().pid();
        return "127." + (1 + (pid / 254) % 254) + "." + (pid % 254);
    }

    private static InetAddress address(int host) {
        try {
            return InetAddress.getByName(net() + "." + host);
        } catch (UnknownHostException e) {
            throw new IllegalStateException("a dotted IPv4 address always parses", e);
        }
    }
}
