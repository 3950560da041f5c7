package dev.dmaplane.perftest;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * perftest between two hosts, as two network namespaces joined by a veth pair ({@code ip-netns(8)},
 * {@code veth(4)}): the server in one at 10.199.0.1, the client in the other at 10.199.0.2, which it takes from its
 * end of the out-of-band connection (no {@code --ip}); RoCEv2 crosses the veth (MTU 9000, as the HCA's netdev
 * says). Runs only where it can create the namespaces (root, iproute2: CI runs as root); skipped otherwise, saying
 * why. The namespaces (and with them the veth pair) are deleted at the end, the processes killed.
 */
@Timeout(240)
class NetnsTest {
    private static final Duration WAIT = Duration.ofSeconds(90);
    private final String tag = Long.toString(ProcessHandle.current().pid());
    private final String nsA = "dmp-a-" + tag;
    private final String nsB = "dmp-b-" + tag;
    private final List<Process> started = new ArrayList<>();
    private boolean made;

    @TempDir
    Path dir;

    @AfterEach
    void takeDown() throws Exception {
        for (Process p : started) {
            p.destroyForcibly();
            p.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS);
        }
        if (made) {
            ip("netns", "del", nsA);
            ip("netns", "del", nsB);
        }
    }

    @Test
    void writeBwCrossesAVethPairBetweenTwoNamespaces() throws Exception {
        String why = namespaces();
        assumeTrue(why == null, () -> "skipped: cannot create network namespaces here (" + why + ")");
        Process server = start(nsA, "server", "write_bw", "-p", "18515", "--ip", "10.199.0.1");
        Path serverOut = dir.resolve("server.out");
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (!Files.readString(serverOut).contains("Waiting for client to connect")) {
            assertTrue(server.isAlive() && System.nanoTime() < deadline, () -> "the server never listened: "
                    + read("server"));
            server.waitFor(20, TimeUnit.MILLISECONDS); // a bounded wait for its output or its end
        }
        Process client = start(nsB, "client", "write_bw", "10.199.0.1", "-p", "18515", "-n", "300", "-s", "65536");
        assertTrue(client.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "the client ends");
        assertEquals(0, client.exitValue(), () -> read("client") + read("server"));
        String out = Files.readString(dir.resolve("client.out"));
        assertTrue(out.lines().anyMatch(l -> l.matches(" 65536 +300 .*")), out);
        assertTrue(out.contains(" GID: 00:00:00:00:00:00:00:00:00:00:255:255:10:199:00:02"), "the client's GID is"
                + " its address on the veth: " + out);
        assertTrue(server.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "the server ends after the run");
        assertEquals(0, server.exitValue(), () -> read("server"));
    }

    /** Makes the namespaces and the veth pair; the reason it could not, or null. */
    private String namespaces() throws Exception {
        if (!"root".equals(System.getProperty("user.name"))) {
            return "not root";
        }
        String r = ip("netns", "add", nsA);
        if (r != null) {
            return r;
        }
        made = true;
        String[][] steps = {
                {"netns", "add", nsB},
                {"link", "add", "va" + tag, "type", "veth", "peer", "name", "vb" + tag},
                {"link", "set", "va" + tag, "netns", nsA},
                {"link", "set", "vb" + tag, "netns", nsB},
                {"-n", nsA, "link", "set", "va" + tag, "mtu", "9000", "up"},
                {"-n", nsB, "link", "set", "vb" + tag, "mtu", "9000", "up"},
                {"-n", nsA, "link", "set", "lo", "up"},
                {"-n", nsB, "link", "set", "lo", "up"},
                {"-n", nsA, "addr", "add", "10.199.0.1/24", "dev", "va" + tag},
                {"-n", nsB, "addr", "add", "10.199.0.2/24", "dev", "vb" + tag}};
        for (String[] s : steps) {
            r = ip(s);
            if (r != null) {
                return r;
            }
        }
        return null;
    }

    /** Runs {@code ip ARGS}; null when it succeeded, else what it said. */
    private String ip(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("ip"));
        cmd.addAll(List.of(args));
        Process p;
        try {
            p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        } catch (IOException e) {
            return "no ip command: " + e.getMessage();
        }
        String out = new String(p.getInputStream().readAllBytes());
        if (!p.waitFor(30, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            return String.join(" ", cmd) + " did not end";
        }
        return p.exitValue() == 0 ? null : String.join(" ", cmd) + ": " + out.strip();
    }

    private Process start(String ns, String name, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of("ip", "netns", "exec", ns,
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow",
                "-cp", System.getProperty("java.class.path"), Main.class.getName()));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectOutput(dir.resolve(name + ".out").toFile())
                .redirectError(dir.resolve(name + ".err").toFile()).start();
        started.add(p);
        return p;
    }

    private String read(String name) {
        try {
            return Files.readString(dir.resolve(name + ".out")) + Files.readString(dir.resolve(name + ".err"));
        } catch (IOException e) {
            return "(unreadable: " + e + ")";
        }
    }
}
