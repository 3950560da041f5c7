package dev.dmaplane.driver.softroce;

import dev.dmaplane.testing.Loopback;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.ValueLayout;
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
                int k = b.receive((udp, ip, port, truncated) -> {
                    assertFalse(truncated);
                    assertEquals(src, ip, "from the sender's address");
                    assertEquals(WireCodec.ROCE_PORT, port);
                    got.add(udp.toArray(ValueLayout.JAVA_BYTE));
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

    /**
     * Messages as the encoder cuts them at MTU 4096 (a first packet with its RETH, middle ones, a shorter last one),
     * to two receivers in turn: on the native socket each run of one size to one destination leaves as one UDP GSO
     * send (udp(7) {@code UDP_SEGMENT}) and reaches a receiver that asked for {@code UDP_GRO} as one run, which it
     * cuts back into the datagrams; either way every datagram arrives whole and in order.
     */
    @Test
    void runsOfOneSizeLeaveAsGsoSendsAndArriveAsTheSameDatagrams() {
        try (UdpSocket a = bind(56); UdpSocket b = bind(57); UdpSocket c = bind(58)) {
            List<byte[]> toB = new ArrayList<>();
            List<byte[]> toC = new ArrayList<>();
            byte[][] d = new byte[UdpSocket.BATCH][];
            int[] len = new int[UdpSocket.BATCH];
            int n = 0;
            for (int m = 0; n < UdpSocket.BATCH; m++) {
                int to = m % 2 == 0 ? 57 : 58;
                for (int i = 0; i < 16 && n < UdpSocket.BATCH; i++, n++) {
                    int udp = i == 0 ? 4128 : i == 15 ? 1000 + m : 4112;
                    d[n] = datagram(to, udp, n);
                    len[n] = d[n].length;
                    (to == 57 ? toB : toC).add(Arrays.copyOfRange(d[n], WireCodec.BTH_AT, len[n]));
                }
            }
            assertEquals(n, a.send(d, len, n));
            assertSame(toB, received(b, toB.size()));
            assertSame(toC, received(c, toC.size()));
            if (a instanceof MmsgSocket m) {
                assertTrue(m.gsoRuns() >= 4, "at least a run per message: " + m.gsoRuns());
                MmsgSocket r = (MmsgSocket) b;
                assertTrue(!r.gro() || r.groRuns() > 0, "a receiver with UDP_GRO takes runs whole on the loopback");
            }
            a.shutdown();
            b.shutdown();
            c.shutdown();
        }
    }

    /** The UDP payloads of the next {@code n} datagrams {@code s} receives. */
    private static List<byte[]> received(UdpSocket s, int n) {
        List<byte[]> got = new ArrayList<>();
        while (got.size() < n) {
            assertTrue(s.receive((udp, ip, port, truncated) -> {
                assertFalse(truncated);
                got.add(udp.toArray(ValueLayout.JAVA_BYTE));
            }) > 0);
        }
        return got;
    }

    private static void assertSame(List<byte[]> want, List<byte[]> got) {
        assertEquals(want.size(), got.size());
        for (int i = 0; i < want.size(); i++) {
            assertArrayEquals(want.get(i), got.get(i), "datagram " + i);
        }
    }

    @Test
    void aDatagramLongerThanAReceiveKeepsIsMarkedTruncated() {
        try (UdpSocket a = bind(53); UdpSocket b = bind(54)) {
            byte[] big = datagram(54, UdpSocket.MAX_DATAGRAM + 100, 1);
            assertEquals(1, a.send(new byte[][]{big}, new int[]{big.length}, 1));
            AtomicInteger truncated = new AtomicInteger();
            b.receive((udp, ip, port, t) -> truncated.addAndGet(t ? 1 : 0));
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
                result.set(b.receive((udp, ip, port, tr) -> { }));
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
