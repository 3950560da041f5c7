package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/**
 * BDF text as {@code pci_name()} prints it ({@code %04x:%02x:%02x.%d}) and as {@code lspci -s} accepts it; device
 * numbers are 5 bits and function numbers 3 bits ({@code PCI_DEVFN} in {@code include/uapi/linux/pci.h}).
 */
class BdfTest {
    @Test
    void parsesCanonicalFormAndPrintsItBack() {
        Bdf b = Bdf.parse("0001:3a:1f.7");
        assertEquals(new Bdf(1, 0x3a, 0x1f, 7), b);
        assertEquals("0001:3a:1f.7", b.toString());
        assertEquals((0x1f << 3) | 7, b.devfn());
        assertEquals((0x3a << 8) | b.devfn(), b.requesterId());
    }

    @Test
    void shortFormMeansDomainZeroAndUppercaseHexIsAccepted() {
        assertEquals(new Bdf(0, 3, 0, 0), Bdf.parse("03:00.0"));
        assertEquals("0000:ab:0c.1", Bdf.parse("AB:0C.1").toString());
    }

    @Test
    void ofDevfnSplitsDeviceAndFunction() {
        assertEquals(new Bdf(0, 2, 1, 3), Bdf.of(0, 2, (1 << 3) | 3));
    }

    @Test
    void ordersLikeLspci() {
        assertTrue(Bdf.parse("00:1f.0").compareTo(Bdf.parse("01:00.0")) < 0);
        assertTrue(Bdf.parse("02:00.1").compareTo(Bdf.parse("02:01.0")) < 0);
        assertTrue(Bdf.parse("0001:00:00.0").compareTo(Bdf.parse("0000:ff:1f.7")) > 0);
    }

    @ParameterizedTest
    @ValueSource(strings = {"0000:03:20.0", "00:00.8", "zz:00.0", "0000:3:00.0", "", "10000:00:00.0", "03:00", "03-00.0"})
    void badTextIsEinvalNamingIt(String text) {
        ErrnoException e = assertThrows(ErrnoException.class, () -> Bdf.parse(text));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("'" + text + "'"), e.getMessage());
    }

    @Test
    void nullAndOutOfRangeComponentsAreEinval() {
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> Bdf.parse(null)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> new Bdf(0, 256, 0, 0)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> new Bdf(0, 0, 32, 0)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> new Bdf(-1, 0, 0, 0)).errno());
    }
}
