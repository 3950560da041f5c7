package dev.dmaplane.rdma.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.Fixture;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The bring-up helpers rxe and siw share: registration that undoes the probe when {@code ib_register_device} fails
 * (as the error path of {@code rxe_net_add} and {@code siw_newlink} does), the netdev and its EUI-64 GUID
 * ({@code addrconf_addr_eui48} in {@code include/net/addrconf.h}: RFC 4291 appendix A, the universal/local bit
 * inverted and {@code ff:fe} inserted), and the {@code pcap FILE|off} switch.
 */
class PciIbDeviceTest {
    private final Fixture f = new Fixture();
    private final PciFunction hca = f.machine.pci().function("04:00.0");

    @TempDir
    Path dir;

    @AfterEach
    void close() {
        f.close();
    }

    @Test
    void aFailedRegistrationClearsBusMasteringAndUndoesTheProbe() {
        PciIbDevice.enableDma(hca);
        assertTrue(hca.busMasterEnabled());
        AtomicBoolean undone = new AtomicBoolean();
        String taken = f.device().name();
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> PciIbDevice.register(f.core, hca, taken, f.provider(), () -> undone.set(true)));
        assertEquals(Errno.EEXIST, e.errno());
        assertFalse(hca.busMasterEnabled());
        assertTrue(undone.get());
    }

    @Test
    void theNetdevOfASoftwareHcaIsNamedAfterItsBus() throws IOException {
        InetAddress ip = PciIbDevice.ipv4OnBus(hca, 10, 0, 0);
        assertEquals(InetAddress.getByName("10.0.0.4"), ip);
        NetdevInfo nd = PciIbDevice.netdev(hca, 1, 1500, ip);
        assertEquals("eth4", nd.name());
        assertArrayEquals(new byte[]{0x02, 0x1d, (byte) 0xa0, 0, 1, 4}, nd.mac());
        assertEquals(List.of(ip), nd.addresses());
        // 02:1d:a0 -> 00:1d:a0, ff:fe between the halves
        assertEquals(0x001d_a0ff_fe00_0104L, nd.eui48());
        assertEquals(Fixture.nodeGuid(nd.mac()), nd.eui48());
    }

    @Test
    void onlyPciFunctionsAndIpv4AddressesAreTaken() throws IOException {
        assertSame(hca, PciIbDevice.pciFunction("rxe", hca));
        Map<String, InetAddress> v6 = Map.of("0000:04:00.0", InetAddress.getByName("fd00::1"));
        ErrnoException e = assertThrows(ErrnoException.class, () -> PciIbDevice.ipv4ByBdf("siw", v6));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("0000:04:00.0"), e.getMessage());
        Map<String, InetAddress> v4 = Map.of("0000:04:00.0", InetAddress.getByName("127.0.0.4"));
        assertEquals(v4, PciIbDevice.ipv4ByBdf("siw", v4));
    }

    @Test
    void pcapTurnsOnReplacesAndClosesTheCapture() throws IOException {
        PcapSwitch captures = new PcapSwitch("rxe");
        List<PcapFile> handed = new ArrayList<>();
        Path a = dir.resolve("a.pcap");
        Path b = dir.resolve("b.pcap");
        assertEquals("capturing to " + a, captures.turn(a.toString(), handed::add));
        PcapFile first = handed.getFirst();
        assertEquals(a, first.file());
        captures.attach(pcap -> assertSame(first, pcap));
        assertEquals("capturing to " + b, captures.turn(b.toString(), handed::add));
        first.ipv4(new byte[20], 0, 20); // closed: nothing more is written
        assertEquals(24, Files.size(a));
        assertEquals("capture off, " + b + " closed", captures.turn("off", handed::add));
        assertNull(handed.getLast());
        captures.attach(pcap -> assertNull(pcap));
        assertEquals("capture off", captures.turn("off", handed::add));
        byte[] header = Files.readAllBytes(b);
        assertArrayEquals(new byte[]{(byte) 0xd4, (byte) 0xc3, (byte) 0xb2, (byte) 0xa1},
                Arrays.copyOf(header, 4));
    }

    @Test
    void aBadCaptureFileChangesNothing() {
        PcapSwitch captures = new PcapSwitch("siw");
        List<PcapFile> handed = new ArrayList<>();
        for (String bad : new String[]{null, " ", "bad\0name"}) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> captures.turn(bad, handed::add));
            assertEquals(Errno.EINVAL, e.errno());
        }
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> captures.turn(dir.resolve("missing/x.pcap").toString(), handed::add));
        assertEquals(Errno.EIO, e.errno());
        assertTrue(handed.isEmpty());
        captures.attach(pcap -> assertNull(pcap));
    }
}
