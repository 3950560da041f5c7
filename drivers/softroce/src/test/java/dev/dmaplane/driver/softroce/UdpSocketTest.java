package dev.dmaplane.driver.softroce;

import dev.dmaplane.testing.Loopback;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.ValueSource;

import java.net.Inet4Address;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The UDP transport's socket ({@code rxe_net.c}'s tunnel socket; {@code sendmmsg(2)}, {@code recvmmsg(2)} with
 * {@code MSG_WAITFORONE}, or a {@code DatagramChannel}): every datagram of a burst arrives whole, in order, from the
 * sender's address and port 4791; a datagram longer than the receive keeps is marked truncated; a shutdown wakes a
 * receive that waits.
 */
@Timeout(60)
@ParameterizedClass(name = "native sendmmsg/recvmmsg {0}")
@ValueSource(booleans = {true, false})
class UdpSocketTest {
    private final boolean nativeSocket;

    UdpSocketTest(boolean nativeSocket) {
        this.nativeSocket = nativeSocket;
    }

    private UdpSocket bind(int host) {
        return UdpSocket.bind((Inet4Address) Loopback.address(host), nativeSocket);
    }

    /** A datagram as the encoder makes it: IP header with the destination at 16, then {@code udp} bytes. */
    private static byte[] datagram(int to, int udp, int seed) {
        byte[] d = new byte[WireCodec.BTH_AT + udp];
        System.arraycopy(Loopback.address(to).getAddress(), 0, d, 16, 4);
        for (int i = WireCodec.BTH_AT; i < d.length; i++) {
            d[i] = (byte) (seed * 31 + i);
        }
        return d;
    }

    @Test
    void aBurstArrivesWholeAndInOrderFromTheSendersAddress() {
        int n = 3 * UdpSocket.BATCH + 5; // more than one batch
        try (UdpSocket a = bind(51); UdpSocket b = bind(52)) {
            assertEquals(nativeSocket && MmsgSocket.AVAILABLE, a.batched());
            byte[][] d = new byte[n][];
            int[] len = new int[n];
            for (int i = 0; i < n; i++) {
                d[i] = datagram(52, 16 + (i * 97) % 4200, i);
                len[i] = d[i].length;
            }
            assertEquals(n, a.send(d, len, n));
            List<byte[]> got = new ArrayList<>();
            int src = ByteOrderInt.of(Loopback.address(51).getAddress());
            while (got.size() < n) {
                int k = b.receive((buf, l, ip, port, truncated) -> {
                    assertFalse(truncated);
                    assertEquals(src, ip, "from the sender's address");
                    assertEquals(WireCodec.ROCE_PORT, port);
                    got.add(Arrays.copyOfRange(buf, WireCodec.BTH_AT, WireCodec.BTH_AT + l));
                });
                assertTrue(k > 0, "a receive takes at least one datagram");
            }
            for (int i = 0; i < n; i++) {
                assertArrayEquals(Arrays.copyOfRange(d[i], WireCodec.BTH_AT, len[i]), got.get(i), "datagram " + i);
            }
            b.shutdown();
            a.shutdown();
        }
    }

    @Test
    void aDatagramLongerThanAReceiveKeepsIsMarkedTruncated() {
        try (UdpSocket a = bind(53); UdpSocket b = bind(54)) {
            byte[] big = datagram(54, UdpSocket.MAX_DATAGRAM + 100, 1);
            assertEquals(1, a.send(new byte[][]{big}, new int[]{big.length}, 1));
            AtomicInteger truncated = new AtomicInteger();
            b.receive((buf, l, ip, port, t) -> truncated.addAndGet(t ? 1 : 0));
            assertEquals(nativeSocket && MmsgSocket.AVAILABLE ? 1 : 0, truncated.get(),
                    "the native receive keeps MAX_DATAGRAM bytes; a channel keeps a whole datagram");
            b.shutdown();
            a.shutdown();
        }
    }

    @Test
    void aShutdownWakesAReceiveThatWaits() throws InterruptedException {
        try (UdpSocket b = bind(55)) {
            CountDownLatch started = new CountDownLatch(1);
            AtomicInteger result = new AtomicInteger(1);
            Thread t = Thread.ofPlatform().name("udp-socket-test-rx").start(() -> {
                started.countDown();
                result.set(b.receive((buf, l, ip, port, tr) -> { }));
            });
            assertTrue(started.await(10, TimeUnit.SECONDS));
            b.shutdown();
            assertTrue(t.join(Duration.ofSeconds(10)), "the receive returned");
            assertEquals(-1, result.get());
        }
    }

    /** An IPv4 address as the int in network order the receiver reports. */
    private static final class ByteOrderInt {
        static int of(byte[] a) {
            return (a[0] & 0xff) << 24 | (a[1] & 0xff) << 16 | (a[2] & 0xff) << 8 | a[3] & 0xff;
        }
    }
}
