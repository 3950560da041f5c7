package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * perftest's {@code ib_write_bw -s 65536} over siw between two machines on the loopback, beside a plain Java TCP
 * loopback stream of the same 64 KiB messages, in one run (docs/BENCHMARKS.md, "siw write_bw"). Runs only when
 * {@code -Ddmaplane.siw.bench=true}: a measurement, not a check, apart from the last message's bytes.
 */
@EnabledIfSystemProperty(named = "dmaplane.siw.bench", matches = "true")
@Timeout(300)
class SiwBandwidthTest {
    private static final int SIZE = 64 << 10;
    /** Messages in flight, as perftest's {@code -t 128} tx depth. */
    private static final int DEPTH = 32;
    private static final Duration RUN = Duration.ofSeconds(Long.getLong("dmaplane.siw.bench.seconds", 5));

    private final SiwHosts h = new SiwHosts(51, 52);

    @AfterEach
    void close() {
        h.close();
    }

    @Test
    void writeBandwidthOf64KiBBesideAPlainTcpLoopback() throws Exception {
        siwWriteBw(); // warm-up: the JIT compiles both paths first
        tcpBw();
        for (int round = 1; round <= 3; round++) {
            double siw = siwWriteBw();
            double tcp = tcpBw();
            System.out.printf("round %d: siw write_bw 64 KiB %.3f GB/s, plain TCP loopback 64 KiB %.3f GB/s, "
                    + "ratio %.2f%n", round, siw / 1e9, tcp / 1e9, siw / tcp);
        }
    }

    private QueuePair[] pair;

    /** Bytes per second of RDMA WRITEs of 64 KiB, {@link #DEPTH} in flight, for {@link #RUN}. */
    private double siwWriteBw() {
        if (pair == null) {
            pair = h.pair();
        }
        byte[] data = SiwHosts.random(SIZE, 7);
        h.a.write(0, data);
        long n = 0;
        int inFlight = 0;
        long start = System.nanoTime();
        long end = start + RUN.toNanos();
        while (System.nanoTime() < end || inFlight > 0) {
            while (inFlight < DEPTH && System.nanoTime() < end) {
                pair[0].postSend(new SendWr.RdmaWrite(n, List.of(h.a.sge(0, SIZE)), SIGNALED,
                        h.b.buf + (n % 32) * SIZE, h.b.mr.rkey()));
                inFlight++;
                n++;
            }
            List<WorkCompletion> c = h.a.cq.poll(DEPTH);
            for (WorkCompletion w : c) {
                assertTrue(w.isSuccess(), w.toString());
            }
            inFlight -= c.size();
            if (c.isEmpty()) {
                Thread.yield(); // two cores: the TX and receive threads need them more than this poll
            }
        }
        long ns = System.nanoTime() - start;
        assertArrayEquals(data, h.b.read(((n - 1) % 32) * SIZE, SIZE), "the last message's bytes");
        return n * (double) SIZE * 1e9 / ns;
    }

    /** Bytes per second of a plain TCP loopback stream of 64 KiB writes for {@link #RUN}. */
    private static double tcpBw() throws IOException, InterruptedException, ExecutionException, TimeoutException {
        try (ServerSocketChannel server = ServerSocketChannel.open()) {
            server.bind(new InetSocketAddress(SiwHosts.loopback(52), 0));
            CompletableFuture<Long> reader = CompletableFuture.supplyAsync(() -> {
                try (SocketChannel in = server.accept()) {
                    ByteBuffer b = ByteBuffer.allocateDirect(SIZE);
                    long total = 0;
                    int r;
                    while ((r = in.read(b)) >= 0) {
                        total += r;
                        b.clear();
                    }
                    return total;
                } catch (IOException e) {
                    throw new IllegalStateException(e);
                }
            });
            long sent = 0;
            long start = System.nanoTime();
            try (SocketChannel out = SocketChannel.open(server.getLocalAddress())) {
                ByteBuffer b = ByteBuffer.allocateDirect(SIZE);
                long end = start + RUN.toNanos();
                while (System.nanoTime() < end) {
                    b.clear();
                    while (b.hasRemaining()) {
                        sent += out.write(b);
                    }
                }
            }
            long got = reader.get(30, TimeUnit.SECONDS);
            long ns = System.nanoTime() - start;
            assertEquals(sent, got);
            return got * 1e9 / ns;
        }
    }
}
