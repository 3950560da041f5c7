package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.List;

/**
 * Config space hex dumps as pciutils' {@code lspci -x}, {@code -xxx} and {@code -xxxx} print them
 * ({@code show_terse} then {@code show_hex_dump} in {@code lspci.c}): the function's line, then 16 bytes a line as
 * {@code "%02x:"} and {@code " %02x"} each, then an empty line. {@code lspci -F FILE} reads this back
 * ({@code dump_init} in {@code lib/dump.c}).
 */
final class LspciHex {
    private LspciHex() {
    }

    /**
     * Bytes of config space for {@code lspci -x} (the standard header), {@code -xxx} (the PCI config space) and
     * {@code -xxxx} (the PCI Express extended space).
     */
    static final List<Integer> DEPTHS = List.of(64, PciRegs.CFG_SPACE_SIZE, ConfigSpace.SIZE);

    /**
     * The dump of each of {@code fns} that answers config requests, the domain shown on every line if any function
     * lies outside domain 0 (lspci's automatic {@code -D}).
     */
    static String dump(List<PciFunction> fns, int bytes) {
        checkDepth(bytes);
        boolean domains = fns.stream().anyMatch(f -> f.bdf().domain() != 0);
        StringBuilder sb = new StringBuilder();
        for (PciFunction fn : fns) {
            // an empty slot ends every config read in a master abort: lspci's bus scan never sees it
            if (fn.absence().isEmpty()) {
                function(sb, fn, bytes, domains);
            }
        }
        return sb.toString();
    }

    private static void function(StringBuilder sb, PciFunction fn, int bytes, boolean domains) {
        Bdf b = fn.bdf();
        if (domains) {
            sb.append(String.format("%04x:", b.domain()));
        }
        sb.append(String.format("%02x:%02x.%d %s: Device %04x:%04x", b.bus(), b.device(), b.function(),
                Lspci.className(fn.classCode()), fn.vendorId(), fn.deviceId()));
        if (fn.revision() != 0) {
            sb.append(String.format(" (rev %02x)", fn.revision()));
        }
        sb.append('\n');
        bytes(sb, fn, bytes);
        sb.append('\n');
    }

    /** {@code show_hex_dump}: {@code bytes} of config space, 16 a line. */
    static void bytes(StringBuilder sb, PciFunction fn, int bytes) {
        checkDepth(bytes);
        ConfigSpace cs = fn.configSpace();
        for (int at = 0; at < bytes; at += 4) {
            if (at % 16 == 0) {
                sb.append(String.format("%02x:", at));
            }
            int dword = cs.read(at, 4);
            for (int i = 0; i < 4; i++) {
                sb.append(String.format(" %02x", (dword >>> (8 * i)) & 0xFF));
            }
            if (at % 16 == 12) {
                sb.append('\n');
            }
        }
    }

    private static void checkDepth(int bytes) {
        if (!DEPTHS.contains(bytes)) {
            throw new ErrnoException(Errno.EINVAL, "lspci dumps " + DEPTHS + " bytes of config space (-x, -xxx, -xxxx), not "
                    + bytes);
        }
    }
}
