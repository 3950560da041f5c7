package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.testing.ExternalTool;
import dev.dmaplane.testing.Loopback;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * perftest between two processes over RoCEv2 ({@code perftest_communication.c}: the server with no host, the client
 * naming it, the out-of-band exchange on {@code -p}; the kernel's {@code rxe_net.c} UDP tunnel between them): a child
 * JVM with this test's class path runs the server, this JVM the client, each HCA on its own 127.X.Y.x ({@link
 * Loopback}). Bounded waits; the child is killed at the end whatever happened.
 */
@Timeout(180)
class WireTest {
    private static final Duration WAIT = Duration.ofSeconds(60);
    /** How many ports {@link #server} tries before it gives up. */
    private static final int PORT_ATTEMPTS = 3;
    private static final String SERVER_IP = Loopback.ip(141);
    private static final String CLIENT_IP = Loopback.ip(142);

    @TempDir
    Path dir;

    private Process child;
    private Thread reader;
    private final BlockingQueue<String> lines = new LinkedBlockingQueue<>();

    @AfterEach
    void killTheChild() throws InterruptedException {
        if (child != null) {
            child.destroyForcibly();
            child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS);
            reader.join(WAIT);
        }
    }

    /** Every tool at a small size, the byte check of both ends passing; the server ends with status 0. */
    @ParameterizedTest
    @ValueSource(strings = {"write_bw", "read_bw", "send_bw", "atomic_bw", "write_lat", "read_lat", "send_lat",
            "atomic_lat"})
    void eachToolRunsBetweenTwoProcesses(String tool) throws Exception {
        int port = server(tool);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        List<String> args = new ArrayList<>(List.of(tool, "127.0.0.1", "-p", String.valueOf(port), "--ip", CLIENT_IP,
                "-n", "50"));
        if (!tool.startsWith("atomic")) {
            args.addAll(List.of("-s", tool.endsWith("_bw") ? "8192" : "64"));
        }
        int status = Main.run(args.toArray(String[]::new), print(out), print(err));
        String report = out.toString(StandardCharsets.UTF_8);
        assertEquals(0, status, () -> report + err.toString(StandardCharsets.UTF_8) + childErr());
        assertTrue(report.contains(" remote address: LID 0000 QPN"), report);
        assertTrue(report.lines().anyMatch(l -> l.matches(" (8192|64|8) +50 .*")), report);
        assertTrue(child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "the server ends after the run");
        assertEquals(0, child.exitValue(), this::childErr);
        assertEquals(0, softroceThreads(), "no engine or receive thread left in the client");
    }

    /**
     * Each tool iWARP carries between two processes over siw ({@code -d siw0} at each end): the QPs connect through
     * the rdma_cm, the port the server listens on told out of band ({@code perftest_communication.c}'s
     * {@code rdma_cm_server_connection} / {@code rdma_cm_client_connection}; {@code cma.c}'s iWARP branches over
     * {@code siw_cm.c}), the byte checks of both ends pass, the server ends with status 0.
     */
    @ParameterizedTest
    @ValueSource(strings = {"write_bw", "read_bw", "send_bw", "write_lat", "read_lat", "send_lat"})
    void eachToolRunsOverSiwBetweenTwoProcesses(String tool) throws Exception {
        int port = server(List.of(tool, "-d", "siw0"));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{tool, "127.0.0.1", "-p", String.valueOf(port), "-d", "siw0", "--ip",
                CLIENT_IP, "-n", "50", "-q", tool.endsWith("_bw") ? "2" : "1", "-s", tool.endsWith("_bw") ? "65536"
                : "64"}, print(out), print(err));
        String report = out.toString(StandardCharsets.UTF_8);
        assertEquals(0, status, () -> report + err.toString(StandardCharsets.UTF_8) + childErr());
        assertTrue(report.lines().anyMatch(l -> l.matches(" (65536 +100|64 +50) .*")), report);
        assertTrue(child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "the server ends after the run");
        assertEquals(0, child.exitValue(), this::childErr);
        assertEquals(0, Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith("siw-") && t.isAlive()).count(), "no siw thread left");
    }

    /**
     * send_bw over siw between processes while the receiving process is stopped for a while (SIGSTOP, then SIGCONT):
     * iWARP has no RNR NAK, so without perftest's receive credits ({@code send_bw.c}: {@code send_rcredit} on
     * iWARP) the client's SENDs, each complete once TCP took it, pile up in the stream, and the receiving siw finds
     * no receive for them when it runs again (a TERMINATE, the run fails with WR_FLUSH_ERR). With credits the client
     * keeps fewer sends than the server's receive queue beyond what the server credited, and the run passes.
     */
    @Test
    void sendBwOverSiwWaitsForReceiveCreditsWhileTheReceiverIsStopped() throws Exception {
        int port = server(List.of("send_bw", "-d", "siw0"));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        AtomicInteger status = new AtomicInteger(-1);
        Thread client = Thread.ofPlatform().name("send-bw-client").start(() -> status.set(Main.run(new String[]{
                "send_bw", "127.0.0.1", "-p", String.valueOf(port), "-d", "siw0", "--ip", CLIENT_IP, "-D", "3",
                "-t", "16", "-s", "64"}, print(out), print(err))));
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (!out.toString(StandardCharsets.UTF_8).contains("#bytes")) { // the run has started
            assertTrue(System.nanoTime() < deadline, "the client never started its run: " + err);
            assertTrue(client.isAlive() || status.get() >= 0, "the client thread ended");
            Thread.onSpinWait();
        }
        signal("STOP");
        try {
            Thread.sleep(500); // not a synchronisation: the stretch of time the receiver is away
        } finally {
            signal("CONT");
        }
        assertTrue(client.join(WAIT), "the client ended");
        String report = out.toString(StandardCharsets.UTF_8);
        assertEquals(0, status.get(), () -> report + err.toString(StandardCharsets.UTF_8) + childErr());
        assertTrue(child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "the server ends after the run");
        assertEquals(0, child.exitValue(), this::childErr);
    }

    /**
     * {@code -R} between two processes ({@code perftest_communication.c}'s rdma_cm mode): the QPs connect through the
     * rdma_cm, over RoCEv2 (the IB CM's REQ, REP and RTU as MADs on the UDP wire) and over siw (MPA), the server
     * taking {@code -R} from the client's command line; the header says {@code rdma_cm QPs : ON}, both ends' byte
     * checks pass, the server ends with status 0.
     */
    @ParameterizedTest
    @ValueSource(strings = {"rxe0 write_bw", "rxe0 send_lat", "siw0 read_bw"})
    void rdmaCmModeRunsBetweenTwoProcesses(String run) throws Exception {
        String device = run.split(" ")[0];
        String tool = run.split(" ")[1];
        int port = server(List.of(tool, "-d", device));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{tool, "127.0.0.1", "-p", String.valueOf(port), "-d", device, "--ip",
                CLIENT_IP, "-R", "-n", "50", "-s", "4096"}, print(out), print(err));
        String report = out.toString(StandardCharsets.UTF_8);
        assertEquals(0, status, () -> report + err.toString(StandardCharsets.UTF_8) + childErr());
        assertTrue(report.contains(" rdma_cm QPs\t : ON\n"), report);
        assertTrue(report.lines().anyMatch(l -> l.matches(" 4096 +50 .*")), report);
        assertTrue(child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "the server ends after the run");
        assertEquals(0, child.exitValue(), this::childErr);
    }

    private void signal(String sig) throws IOException, InterruptedException {
        Process k = new ProcessBuilder("kill", "-" + sig, String.valueOf(child.pid())).inheritIO().start();
        assertTrue(k.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS) && k.exitValue() == 0, "kill -" + sig);
    }

    /**
     * {@code --pcap FILE} at the client of a run between processes: the file holds what this end's HCA sent on the
     * wire, every frame from its GID to the server's on UDP 4791 (RoCEv2), the twenty 8 KiB RDMA WRITEs as a First
     * packet with the RETH and a Last one (path MTU 4096), as tshark decodes them; the server's ACKs are in its own
     * capture, not here. The server ignores the option in the command line the client sends it.
     */
    @Test
    void aClientCapturesWhatItsHcaSends() throws Exception {
        ExternalTool tshark = ExternalTool.require("tshark",
                "apt-get install tshark (Debian, Ubuntu), dnf install wireshark-cli (Fedora)");
        int port = server("write_bw");
        Path file = dir.resolve("client.pcap");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{"write_bw", "127.0.0.1", "-p", String.valueOf(port), "--ip", CLIENT_IP,
                "-n", "20", "-s", "8192", "--pcap", file.toString()}, print(out), print(err));
        assertEquals(0, status, () -> out.toString(StandardCharsets.UTF_8) + err.toString(StandardCharsets.UTF_8)
                + childErr());
        assertTrue(child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "the server ends after the run");
        assertEquals(0, child.exitValue(), this::childErr);

        String decoded = tshark.run(Duration.ofSeconds(60), "-r", file.toString(), "-T", "fields", "-E",
                "separator=|", "-e", "_ws.malformed", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.dstport", "-e",
                "infiniband.bth.opcode", "-e", "infiniband.reth.dmalen");
        List<String[]> rows = decoded.lines().filter(l -> !l.isBlank()).map(l -> l.split("\\|", -1)).toList();
        assertTrue(rows.stream().allMatch(r -> r[0].isEmpty() && r[1].equals(CLIENT_IP) && r[2].equals(SERVER_IP)
                && r[3].equals("4791")), decoded);
        assertEquals(20, rows.stream().filter(r -> r[4].equals("6") && r[5].equals("8192")).count(), decoded);
        assertEquals(20, rows.stream().filter(r -> r[4].equals("8")).count(), decoded);
        assertEquals(40, rows.size(), decoded);
    }

    /** atomic_bw over siw between processes: refused in one line naming why at the client, told to the server. */
    @Test
    void atomicBwOverSiwIsRefusedInOneLine() throws Exception {
        int port = server(List.of("atomic_bw", "-d", "siw0"));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{"atomic_bw", "127.0.0.1", "-p", String.valueOf(port), "-d", "siw0",
                "--ip", CLIENT_IP}, print(out), print(err));
        assertEquals(1, status);
        assertEquals("EOPNOTSUPP: perftest: atomic_bw needs atomics, which siw0 (iWARP, atomic_cap NONE) does not"
                + " have\n", err.toString(StandardCharsets.UTF_8));
        assertTrue(child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "the server ends");
        assertEquals(1, child.exitValue(), this::childErr);
    }

    /**
     * A server killed in the middle of a run: the client's RC requests are retried retry_cnt times and its QP ends in
     * RETRY_EXC_ERR (IBTA 9.7.6.1.3, {@code rxe_comp.c}), within the (retry_cnt + 1) transport timeouts of about
     * 0.54 s; the client fails with that completion (one line, exit 1 from {@link Main}), its threads ended and its
     * UDP address free again. The server is killed once the client's HCA has sent packets: the flow is running.
     */
    @Test
    void aKilledServerEndsTheClientInRetryExceeded() throws Exception {
        int port = server("write_bw");
        AtomicReference<Wire.Station> station = new AtomicReference<>();
        Wire.Stations watched = new Wire.Stations() {
            @Override
            public void check(String device) {
                Standalone.STATIONS.check(device);
            }

            @Override
            public Wire.Station up(String device, InetAddress ip) {
                Wire.Station st = Standalone.STATIONS.up(device, ip);
                station.set(st);
                return st;
            }
        };
        String[] args = {"write_bw", "127.0.0.1", "-p", String.valueOf(port), "--ip", CLIENT_IP, "-s", "4096", "-n",
                "100000000", "-N"};
        PerfConfig cfg = PerfCli.parseAny(args);
        Wire.Options o = new Wire.Options("127.0.0.1", port, "rxe0", InetAddress.getByName(CLIENT_IP), null);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread client = Thread.ofPlatform().name("perftest-client").start(() -> {
            try {
                Wire.client(cfg, o, List.of(args), watched, print(OutputStream.nullOutputStream()));
            } catch (Throwable t) {
                failure.set(t);
            }
        });
        try {
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (sent(station.get()) == 0) {
                assertTrue(client.isAlive() && System.nanoTime() < deadline, () -> "the client never sent: " + failure);
                LockSupport.parkNanos(10_000_000L);
            }
            child.destroyForcibly();
            long t0 = System.nanoTime();
            client.join(Duration.ofSeconds(30));
            assertFalse(client.isAlive(), "the client ends within 30 s of the server's death");
            long secs = (System.nanoTime() - t0) / 1_000_000_000L;
            assertTrue(secs < 15, "ended after " + secs + " s");
        } finally {
            child.destroyForcibly();
            client.join(WAIT);
        }
        ErrnoException e = assertInstanceOf(ErrnoException.class, failure.get());
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().contains("RETRY_EXC_ERR") && !e.getMessage().contains("\n"), e.getMessage());
        assertEquals(0, softroceThreads(), "no engine or receive thread left in the client");
        try (DatagramSocket s = new DatagramSocket(new InetSocketAddress(InetAddress.getByName(CLIENT_IP), 4791))) {
            assertTrue(s.isBound(), "the client's RoCEv2 address is free again");
        }
    }

    /** Packets the client's HCA sent so far (0 before it is up). */
    private static long sent(Wire.Station st) {
        return st == null ? 0 : st.core().device("rxe0").map(d -> d.hwCounters(1).getOrDefault("sent_pkts", 0L))
                .orElse(0L);
    }

    /**
     * 1 % of the datagrams lost and every pair swapped, both ways, in both processes (the driver's
     * {@code dmaplane.softroce.udp.*} properties): RC's go-back-N (IBTA 9.7.5, {@code rxe_comp.c}) delivers every
     * message once and in order; READ responses are taken out of order and a retry started is the only one until
     * its response comes ({@code rxe_comp.c} {@code comp.started_retry}), atomics resent are answered from the
     * responder's resources. Every work request is signaled ({@code -Q 1}), so the client checks each completion
     * against the next request it posted; the byte check passes on both ends; the client's counters show the
     * sequence NAKs and retransmissions the loss caused.
     */
    @ParameterizedTest
    @ValueSource(strings = {"write_bw", "send_bw", "read_bw", "atomic_bw", "write_lat"})
    void lossAndReorderingBetweenProcessesLoseNoMessage(String tool) throws Exception {
        String[] lossy = {"-Ddmaplane.softroce.udp.dropEvery=100", "-Ddmaplane.softroce.udp.swapPairs=true",
                "-Dorg.slf4j.simpleLogger.log.dev.dmaplane.perftest.Wire=debug"};
        int port = server(tool, lossy);
        String size = tool.startsWith("atomic") ? "8" : "8192";
        List<String> cmd = new ArrayList<>(java(lossy));
        cmd.addAll(List.of(tool, "127.0.0.1", "-p", String.valueOf(port), "--ip", CLIENT_IP, "-n", "400", "-s", size));
        if (tool.endsWith("_bw")) {
            cmd.addAll(List.of("-Q", "1", "-t", "16"));
        }
        Path clientErr = dir.resolve("client.err");
        Process client = new ProcessBuilder(cmd).redirectError(clientErr.toFile())
                .redirectOutput(dir.resolve("client.out").toFile()).start();
        try {
            assertTrue(client.waitFor(WAIT.toSeconds() * 2, TimeUnit.SECONDS), "the client ends");
        } finally {
            client.destroyForcibly();
            client.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS);
        }
        String out = Files.readString(dir.resolve("client.out"));
        String err = Files.readString(clientErr);
        assertEquals(0, client.exitValue(), () -> out + err + childErr());
        assertTrue(out.lines().anyMatch(l -> l.matches(" +" + size + " +400 .*")), out);
        assertTrue(err.matches("(?s).*completer_retry_err=[1-9].*"), "the loss was recovered by retransmission: " + err);
        assertTrue(child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "the server ends after the run");
        assertEquals(0, child.exitValue(), this::childErr);
    }

    /** A server whose client names a device it does not have: one line, exit 1, before anything runs. */
    @Test
    void anUnknownDeviceIsOneLine() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{"write_bw", "-d", "rxe7", "-p", "1"}, print(out), print(err));
        assertEquals(1, status);
        assertEquals("ENODEV: perftest: no RDMA device rxe7 (devices: rxe0, rxe1, siw0, siw1)\n",
                err.toString(StandardCharsets.UTF_8));
    }

    private int server(String tool, String... jvmArgs) throws IOException, InterruptedException {
        return server(List.of(tool), jvmArgs);
    }

    /**
     * Starts the server child on a port that was free a moment ago and waits until it listens; when the child could
     * not listen there (EADDRINUSE: the kernel gave the port to another socket meanwhile, as an ephemeral port), it
     * starts again on another.
     *
     * @return the port the server listens on
     */
    private int server(List<String> toolArgs, String... jvmArgs) throws IOException, InterruptedException {
        for (int attempt = 1; ; attempt++) {
            int port = freePort();
            if (listening(toolArgs, port, jvmArgs)) {
                return port;
            }
            String err = childErr();
            if (attempt == PORT_ATTEMPTS || !err.contains("EADDRINUSE")) {
                fail("the server never listened; its stderr:\n" + err);
            }
            assertTrue(child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "the server that could not listen ends");
            reader.join(WAIT);
            lines.clear();
        }
    }

    /** Whether the server started on {@code port} listens, or ended (or said nothing for {@link #WAIT}) before. */
    private boolean listening(List<String> toolArgs, int port, String... jvmArgs)
            throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(java(jvmArgs));
        cmd.addAll(toolArgs);
        cmd.addAll(List.of("-p", String.valueOf(port), "--ip", SERVER_IP));
        child = new ProcessBuilder(cmd).redirectError(dir.resolve("server.err").toFile()).start();
        Process p = child;
        reader = Thread.ofPlatform().name("server-stdout").daemon().start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String l;
                while ((l = r.readLine()) != null) {
                    lines.add(l);
                }
            } catch (IOException e) {
                lines.add("READ FAILED " + e);
            }
        });
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (System.nanoTime() - deadline < 0) {
            String l = lines.poll(100, TimeUnit.MILLISECONDS);
            if (l == null) {
                if (!reader.isAlive() && lines.isEmpty()) {
                    return false; // its output ended without the line: it exited
                }
            } else if (l.contains("Waiting for client to connect")) {
                return true;
            }
        }
        return false;
    }

    /** {@code java} with this test's class path and {@code jvmArgs}, running {@link Main}. */
    private static List<String> java(String... jvmArgs) {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"));
        cmd.addAll(List.of(jvmArgs));
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName()));
        return cmd;
    }

    private String childErr() {
        try {
            Path p = dir.resolve("server.err");
            return Files.exists(p) ? Files.readString(p) : "(none)";
        } catch (IOException e) {
            return "(unreadable: " + e + ")";
        }
    }

    private static PrintStream print(OutputStream o) {
        return new PrintStream(o, true, StandardCharsets.UTF_8);
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    private static long softroceThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith("softroce")).count();
    }
}
