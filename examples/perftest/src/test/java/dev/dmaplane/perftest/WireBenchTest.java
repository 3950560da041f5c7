package dev.dmaplane.perftest;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The plain TCP baseline of docs/BENCHMARKS.md's "siw between processes" ({@code wire-bench}): 64 KiB messages from
 * one thread to another over a loopback {@code SocketChannel} (the stream siw's MPA runs on, RFC 5044), counted at
 * the receiver; the sender's thread ends with the measurement.
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
}
