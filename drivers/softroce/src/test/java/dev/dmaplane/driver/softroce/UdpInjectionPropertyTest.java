package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Loss and reordering injection between processes: the UDP transports of a driver started with
 * {@code dmaplane.softroce.udp.dropEvery} and {@code dmaplane.softroce.udp.swapPairs} lose and swap what they send
 * ({@code rxe_net.c}'s send path, with the faults a lossy network adds); a bad value is refused at the driver's start.
 */
@Timeout(60)
class UdpInjectionPropertyTest {
    @AfterEach
    void clear() {
        System.clearProperty(SoftRoceDriver.UDP_DROP_EVERY_PROPERTY);
        System.clearProperty(SoftRoceDriver.UDP_SWAP_PAIRS_PROPERTY);
    }

    @Test
    void theUdpTransportsTakeTheInjectionProperties() {
        System.setProperty(SoftRoceDriver.UDP_DROP_EVERY_PROPERTY, "100");
        System.setProperty(SoftRoceDriver.UDP_SWAP_PAIRS_PROPERTY, "true");
        try (UdpHcas u = new UdpHcas(151, 152)) {
            assertEquals(100, u.udpA().dropEvery);
            assertTrue(u.udpB().swapPairs);
            assertTrue(u.udpA().perPacket(), "senders send single packets so that any one can be lost");
        }
    }

    @Test
    void aNegativeOrMalformedLossIsEinvalNamingIt() {
        try (RdmaCore core = new RdmaCore(new Tracer())) {
            for (String bad : new String[]{"-1", "1%"}) {
                System.setProperty(SoftRoceDriver.UDP_DROP_EVERY_PROPERTY, bad);
                ErrnoException e = assertThrows(ErrnoException.class,
                        () -> new SoftRoceDriver(core, Map.of(UdpHcas.BDF, UdpHcas.loopback(153))));
                assertEquals(Errno.EINVAL, e.errno());
                assertTrue(e.getMessage().contains(bad), e.getMessage());
            }
        }
    }
}
