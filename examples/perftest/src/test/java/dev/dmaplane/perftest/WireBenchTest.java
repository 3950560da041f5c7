package dev.dmaplane.perftest;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetAddress;
import java.net.ServerSocket;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * wire-bench's own parts. The plain TCP baseline of docs/BENCHMARKS.md's "siw between processes" ({@code wire-bench}): 64 KiB messages from
 * one thread to another over a loopback {@code SocketChannel} (the stream siw's MPA runs on, RFC 5044), counted at
 * the receiver; the sender's thread ends with the measurement. A forked server whose port another socket took
 * meanwhile (bind(2): EADDRINUSE) is started again on another.
 */
@Timeout(60)
class WireBenchTest {
    @Test
    void theTcpBaselineMovesBytesAndLeavesNoThread() {
        double mb = WireBench.tcpBandwidth(WireBench.BW_SIZE, 1);
        assertTrue(mb > 0, "MB/s " + mb);
        assertEquals(0, Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().equals("wire-bench-tcp-tx") && t.isAlive()).count());
    }

    /**
     * The port a server was told was free a moment ago is taken by someone else's listener when it binds (bind(2),
     * EADDRINUSE): wire-bench starts it again on the next port instead of failing the run.
     */
    @Test
    void aServerWhosePortWasTakenStartsAgainOnAnother() throws Exception {
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getByName("0.0.0.0"))) {
            int free = WireBench.freePort();
            Deque<Integer> ports = new ArrayDeque<>(List.of(taken.getLocalPort(), free));
            WireBench.Server s = WireBench.server(List.of("write_bw", "--ip", "127.83.1.11", "-D", "1"),
                    ports::removeFirst);
            try {
                assertEquals(free, s.port(), "the second port");
                assertTrue(s.process().isAlive(), "the server listens");
            } finally {
                s.process().destroyForcibly();
                assertTrue(s.process().waitFor(30, TimeUnit.SECONDS));
            }
        }
    }
}
