package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.Loopback;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * RoCEv2 between two processes, as {@code rdma_rxe} runs between two hosts ({@code rxe_net.c}'s UDP tunnel): a child
 * JVM started with this test's class path runs a {@link WirePeer} on 127.X.Y.22 (its own machine, RDMA core and
 * driver); this JVM's peer on 127.X.Y.21 (the /24 of {@link Loopback}) exchanges QPN, address and rkey with it over the
 * child's standard input and output (perftest's out-of-band exchange), then RDMA WRITEs 1 MiB into the child's memory
 * and READs it back, every byte checked. Bounded waits; the child is killed at the end whatever happened.
 */
@Timeout(180)
class TwoProcessTest {
    private static final Duration WAIT = Duration.ofSeconds(60);

    @TempDir
    Path dir;

    @Test
    void aOneMebibyteWriteAndReadCrossToAChildProcess() throws Exception {
        Path err = dir.resolve("child.err");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process child = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED",
                "--sun-misc-unsafe-memory-access=allow", Loopback.childProperty(),
                "-cp", System.getProperty("java.class.path"),
                WirePeer.class.getName(), "22", "21").redirectError(err.toFile()).start();
        BlockingQueue<String> lines = new LinkedBlockingQueue<>();
        Thread reader = Thread.ofPlatform().name("child-stdout").daemon().start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(child.getInputStream(),
                    StandardCharsets.UTF_8))) {
                String l;
                while ((l = r.readLine()) != null) {
                    lines.add(l);
                }
            } catch (IOException e) {
                lines.add("READ FAILED " + e);
            }
        });
        PrintStream toChild = new PrintStream(child.getOutputStream(), true, StandardCharsets.UTF_8);
        try (WirePeer me = new WirePeer(21)) {
            String[] peer = next(lines, "PEER ", err).split(" ");
            int qpn = Integer.parseInt(peer[1]);
            long va = Long.parseLong(peer[2]);
            int rkey = Integer.parseInt(peer[3]);
            me.connect(qpn, Gid.of(UdpHcas.loopback(22)));
            toChild.println("CONNECT " + me.qp.qpNum());
            next(lines, "READY", err);

            byte[] data = Hcas.random(1 << 20, 41);
            me.host.write(0, data);
            me.qp.postSend(new SendWr.RdmaWrite(1, List.of(me.host.sge(0, data.length)), SIGNALED, va, rkey));
            WorkCompletion write = Hcas.one(me.host.cq);
            assertTrue(write.isSuccess(), () -> write + " " + stats(me));
            me.qp.postSend(new SendWr.RdmaRead(2, List.of(me.host.sge(2 << 20, data.length)), SIGNALED, va, rkey));
            WorkCompletion read = Hcas.one(me.host.cq);
            assertTrue(read.isSuccess(), () -> read + " " + stats(me));
            assertArrayEquals(data, me.host.read(2 << 20, data.length), "1 MiB there and back through the child");

            toChild.println("QUIT");
            next(lines, "BYE", err);
            assertTrue(child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "the child ends");
            assertEquals(0, child.exitValue(), () -> "child exit status; its stderr:\n" + read(err));
        } finally {
            child.destroyForcibly();
            child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS);
            reader.join(WAIT);
        }
        assertEquals(0, Hcas.softroceThreads(), "no engine or receive thread left here");
    }

    /** What this side's HCA counted, and what its socket sent, received and lost. */
    private static String stats(WirePeer p) {
        UdpTransport t = (UdpTransport) p.driver.providers.get("rxe0").engine.transport;
        return p.core.device("rxe0").orElseThrow().hwCounters(1) + " datagrams sent " + t.sent + " received "
                + t.received + " lost " + t.dropped;
    }

    /** The next line from the child, which must start with {@code prefix}, waited for at most a minute. */
    private static String next(BlockingQueue<String> lines, String prefix, Path err) throws InterruptedException {
        String l = lines.poll(WAIT.toSeconds(), TimeUnit.SECONDS);
        if (l == null || !l.startsWith(prefix)) {
            fail("expected '" + prefix + "...' from the child, got " + l + "; its stderr:\n" + read(err));
        }
        return l;
    }

    private static String read(Path p) {
        try {
            return Files.exists(p) ? Files.readString(p) : "(none)";
        } catch (IOException e) {
            return "(unreadable: " + e + ")";
        }
    }
}
