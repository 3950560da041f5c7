package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.pci.PciRegs.BASE_ADDRESS_0;
import static dev.dmaplane.pci.PciRegs.BASE_ADDRESS_MEM_MASK;
import static dev.dmaplane.pci.PciRegs.BASE_ADDRESS_MEM_TYPE_64;
import static dev.dmaplane.pci.PciRegs.BASE_ADDRESS_MEM_TYPE_MASK;
import static dev.dmaplane.pci.PciRegs.BASE_ADDRESS_SPACE_IO;

/**
 * The bus addresses a function's BAR registers hold, decoded as {@code __pci_read_base} ({@code drivers/pci/probe.c})
 * reads them: I/O or memory, a 64-bit BAR joined with the dword above it. A device model asks on every DMA, so the
 * decoded set is kept with the config write count it saw and decoded again once that count moved.
 * <p>
 * Every change of the registers counts a write inside the config space's monitor, except {@link ConfigSpace#init}
 * and {@link ConfigSpace#hardwareUpdate}, which call {@link #invalidate}; decoding holds the same monitor, so a kept
 * set whose count still matches holds what the registers hold.
 */
final class BarAddresses {
    /** The address of each BAR register, decoded when the write counter read {@code writes}. */
    private record Decoded(int writes, long[] addresses) {
    }

    private final ConfigSpace regs;
    /** The write counter {@code regs} shares with its topology. */
    private final AtomicInteger writes;
    /** The addresses as last decoded, or null. */
    private volatile Decoded decoded;

    BarAddresses(ConfigSpace regs, AtomicInteger writes) {
        this.regs = regs;
        this.writes = writes;
    }

    /**
     * The bus address BAR register {@code index} holds; 0 if the BAR is not implemented.
     *
     * @throws ErrnoException {@code EINVAL} for an index outside the header's BARs (6 in type 0, 2 in type 1)
     */
    long address(int index) {
        Decoded d = decoded;
        if (d == null || d.writes() != writes.get()) {
            d = decodeAll();
        }
        long[] addresses = d.addresses();
        if (index < 0 || index >= addresses.length) {
            throw new ErrnoException(Errno.EINVAL, "BAR index " + index + " is outside 0.." + (addresses.length - 1));
        }
        return addresses[index];
    }

    /** Drops the decoded addresses: the registers changed without a counted write. */
    void invalidate() {
        decoded = null;
    }

    private Decoded decodeAll() {
        synchronized (regs) {
            int seen = writes.get();
            int count = regs.isBridgeHeader() ? 2 : 6;
            long[] addresses = new long[count];
            for (int i = 0; i < count; i++) {
                addresses[i] = decode(i, count);
            }
            Decoded d = new Decoded(seen, addresses);
            decoded = d;
            return d;
        }
    }

    private long decode(int index, int count) {
        int lo = regs.read(BASE_ADDRESS_0 + 4 * index, 4);
        if ((lo & BASE_ADDRESS_SPACE_IO) != 0) {
            return lo & ~0x3L & 0xFFFF_FFFFL;
        }
        long addr = lo & BASE_ADDRESS_MEM_MASK & 0xFFFF_FFFFL;
        if ((lo & BASE_ADDRESS_MEM_TYPE_MASK) == BASE_ADDRESS_MEM_TYPE_64 && index + 1 < count) {
            addr |= (regs.read(BASE_ADDRESS_0 + 4 * (index + 1), 4) & 0xFFFF_FFFFL) << 32;
        }
        return addr;
    }
}
