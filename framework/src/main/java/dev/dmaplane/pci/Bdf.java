package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.Comparator;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A PCI address, domain:bus:device.function, as {@code pci_name()} prints it ({@code 0000:03:00.0}).
 *
 * @param domain   PCI segment, 0..0xFFFF
 * @param bus      bus number, 0..255
 * @param device   device (slot) number, 0..31
 * @param function function number, 0..7
 */
public record Bdf(int domain, int bus, int device, int function) implements Comparable<Bdf> {
    private static final Pattern TEXT =
            Pattern.compile("(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\\.([0-9a-fA-F])");
    private static final Comparator<Bdf> ORDER = Comparator.comparingInt(Bdf::domain)
            .thenComparingInt(Bdf::bus).thenComparingInt(Bdf::devfn);

    public Bdf {
        check(domain >= 0 && domain <= 0xFFFF, "domain", domain);
        check(bus >= 0 && bus <= 0xFF, "bus", bus);
        check(device >= 0 && device <= 0x1F, "device", device);
        check(function >= 0 && function <= 7, "function", function);
    }

    /**
     * Parses {@code DDDD:BB:DD.F} or {@code BB:DD.F} (domain 0), hex digits as {@code lspci -s} takes them.
     *
     * @throws ErrnoException {@code EINVAL} naming the text if it is not a valid BDF
     */
    public static Bdf parse(String text) {
        if (text == null) {
            throw new ErrnoException(Errno.EINVAL, "BDF must not be null");
        }
        Matcher m = TEXT.matcher(text.strip());
        if (!m.matches()) {
            throw new ErrnoException(Errno.EINVAL, "'" + text + "' is not a BDF (want DDDD:BB:DD.F or BB:DD.F in hex)");
        }
        int domain = m.group(1) == null ? 0 : Integer.parseInt(m.group(1), 16);
        int bus = Integer.parseInt(m.group(2), 16);
        int dev = Integer.parseInt(m.group(3), 16);
        int fn = Integer.parseInt(m.group(4), 16);
        if (dev > 0x1F || fn > 7) {
            throw new ErrnoException(Errno.EINVAL, "'" + text + "' is not a BDF: device must be 00..1f and function 0..7");
        }
        return new Bdf(domain, bus, dev, fn);
    }

    /** The BDF of {@code devfn} ({@code PCI_DEVFN}) on {@code domain:bus}. */
    public static Bdf of(int domain, int bus, int devfn) {
        check(devfn >= 0 && devfn <= 0xFF, "devfn", devfn);
        return new Bdf(domain, bus, devfn >> 3, devfn & 7);
    }

    /** {@code PCI_DEVFN(device, function)}: the low byte of the requester ID. */
    public int devfn() {
        return (device << 3) | function;
    }

    /** The 16-bit requester ID bus:devfn a function's DMA carries ({@code pci_dev_id}). */
    public int requesterId() {
        return (bus << 8) | devfn();
    }

    /** The same slot (device) with another function number. */
    public Bdf withFunction(int fn) {
        return new Bdf(domain, bus, device, fn);
    }

    /** Orders by domain, bus, devfn: the order {@code lspci} lists functions in. */
    @Override
    public int compareTo(Bdf o) {
        return ORDER.compare(this, o);
    }

    /** The canonical form {@code DDDD:BB:DD.F}. */
    @Override
    public String toString() {
        return String.format("%04x:%02x:%02x.%x", domain, bus, device, function);
    }

    private static void check(boolean ok, String what, int value) {
        if (!ok) {
            throw new ErrnoException(Errno.EINVAL, "BDF " + what + " out of range: 0x" + Integer.toHexString(value));
        }
    }
}
