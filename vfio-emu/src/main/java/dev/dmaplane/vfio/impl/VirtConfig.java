package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.ConfigSpace;
import dev.dmaplane.pci.PciFunction;

import java.util.OptionalInt;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * The config space a vfio-pci user sees ({@code vdev->vconfig} with the permission bits of
 * {@code drivers/vfio/pci/vfio_pci_config.c}): per byte, which bits are virtual (kept in {@code vconfig}, the
 * hardware never sees them) and which the user may write. The BARs and the ROM BAR are virtual (a sizing write
 * of all-ones reads back the size mask, {@code vfio_bar_fixup}; the hardware keeps the addresses firmware gave);
 * of the command register only Interrupt Disable is virtual, the rest reaches the function; the MSI capability's
 * enable, size, address and data are virtual (VFIO enables MSI, through {@code VFIO_DEVICE_SET_IRQS}); the MSI-X
 * capability and every other register read the hardware and ignore writes. Thread-safe.
 */
final class VirtConfig {
    private final PciFunction fn;
    private final ConfigSpace hw;
    private final int size;
    private final byte[] vconfig;
    private final byte[] virt;
    private final byte[] write;

    VirtConfig(PciFunction fn) {
        this.fn = fn;
        this.hw = fn.configSpace();
        this.size = ConfigSpace.SIZE;
        this.vconfig = new byte[size];
        this.virt = new byte[size];
        this.write = new byte[size];
        for (int i = 0; i < size; i += 4) {
            int v = hw.read(i, 4);
            for (int b = 0; b < 4; b++) {
                vconfig[i + b] = (byte) (v >>> (8 * b));
            }
        }
        perm(VENDOR_ID, 4, -1, 0);
        perm(COMMAND, 2, COMMAND_INTX_DISABLE, 0xffff);
        perm(STATUS, 2, STATUS_CAP_LIST, 0);
        perm(CACHE_LINE_SIZE, 1, 0, 0xff);
        perm(LATENCY_TIMER, 1, 0, 0xff);
        perm(BASE_ADDRESS_0, 24, -1, -1);
        perm(ROM_ADDRESS, 4, -1, -1);
        perm(CAPABILITY_LIST, 1, -1, 0);
        perm(INTERRUPT_LINE, 1, -1, -1);
        perm(INTERRUPT_PIN, 1, -1, 0);
        OptionalInt msi = hw.findCapability(CAP_ID_MSI);
        if (msi.isPresent()) {
            int m = msi.getAsInt();
            int flagsVirt = MSI_FLAGS_QSIZE | MSI_FLAGS_ENABLE;
            perm(m + MSI_FLAGS, 2, flagsVirt, flagsVirt);
            int end = m + ((hw.read(m + MSI_FLAGS, 2) & MSI_FLAGS_64BIT) != 0 ? MSI_PENDING_64 : MSI_PENDING_32);
            perm(m + MSI_ADDRESS_LO, end - m - MSI_ADDRESS_LO, -1, -1);
        }
        barFixup();
    }

    private void perm(int offset, int length, int virtBits, int writeBits) {
        for (int i = 0; i < length; i++) {
            int shift = 8 * (i % 4);
            virt[offset + i] = (byte) (virtBits >>> shift);
            write[offset + i] = (byte) (writeBits >>> shift);
        }
    }

    /** The config region's size ({@code pdev->cfg_size}). */
    int size() {
        return size;
    }

    /**
     * {@code vfio_pci_config_rw}: reads {@code buf.length} bytes at {@code pos} in naturally aligned pieces of up to
     * four bytes, as {@code vfio_config_do_rw} splits them.
     *
     * @throws ErrnoException {@code EFAULT} for a range outside the {@link #size()} bytes
     */
    synchronized void read(int pos, byte[] buf) {
        check(pos, buf.length);
        for (int done = 0; done < buf.length; ) {
            int at = pos + done;
            int n = piece(at, buf.length - done);
            int v = readPiece(at, n);
            for (int b = 0; b < n; b++) {
                buf[done + b] = (byte) (v >>> (8 * b));
            }
            done += n;
        }
    }

    /** Writes {@code buf} at {@code pos}, piece by piece as {@link #read}. */
    synchronized void write(int pos, byte[] buf) {
        check(pos, buf.length);
        for (int done = 0; done < buf.length; ) {
            int at = pos + done;
            int n = piece(at, buf.length - done);
            int v = 0;
            for (int b = 0; b < n; b++) {
                v |= (buf[done + b] & 0xff) << (8 * b);
            }
            writePiece(at, n, v);
            done += n;
        }
    }

    private void check(int pos, int count) {
        if (pos < 0 || count < 0 || pos >= size || count > size - pos) {
            throw new ErrnoException(Errno.EFAULT, String.format("%s: config access %#x+%d outside the %d bytes",
                    fn.name(), pos, count, size));
        }
    }

    private static int piece(int at, int left) {
        if ((at & 3) == 0 && left >= 4) {
            return 4;
        }
        if ((at & 1) == 0 && left >= 2) {
            return 2;
        }
        return 1;
    }

    private int mask(byte[] bits, int at, int n) {
        int m = 0;
        for (int b = 0; b < n; b++) {
            m |= (bits[at + b] & 0xff) << (8 * b);
        }
        return m;
    }

    private int vbytes(int at, int n) {
        return mask(vconfig, at, n);
    }

    /** {@code vfio_default_config_read}: virtual bits from {@code vconfig}, the rest from the hardware. */
    private int readPiece(int at, int n) {
        int v = mask(virt, at, n);
        int phys = v == (n == 4 ? -1 : (1 << (8 * n)) - 1) ? 0 : hw.read(at, n);
        return (phys & ~v) | (vbytes(at, n) & v);
    }

    /**
     * {@code vfio_default_config_write}: writable virtual bits go to {@code vconfig}, writable hardware bits to the
     * function (read, merge, write), the rest is dropped. A BAR write marks the BARs for {@code vfio_bar_fixup}.
     */
    private void writePiece(int at, int n, int value) {
        int w = mask(write, at, n);
        if (w == 0) {
            return;
        }
        int v = mask(virt, at, n);
        int virtWrite = w & v;
        if (virtWrite != 0) {
            int cur = vbytes(at, n);
            int next = (cur & ~virtWrite) | (value & virtWrite);
            for (int b = 0; b < n; b++) {
                vconfig[at + b] = (byte) (next >>> (8 * b));
            }
        }
        int physWrite = w & ~v;
        if (physWrite != 0) {
            int cur = hw.read(at, n);
            hw.write(at, n, (cur & ~physWrite) | (value & physWrite));
        }
        if (at < ROM_ADDRESS + 4 && at + n > BASE_ADDRESS_0) {
            barFixup();
        }
    }

    /**
     * {@code vfio_bar_fixup}: each virtual BAR keeps only the address bits its size allows, with the flag bits of
     * the real BAR; an unimplemented BAR (and the ROM BAR, which no model has) reads 0.
     */
    private void barFixup() {
        for (int i = 0; i < 6; i++) {
            int at = BASE_ADDRESS_0 + 4 * i;
            Bar bar = fn.bar(i).orElse(null);
            if (bar != null) {
                long mask = ~(bar.size() - 1);
                int flags = (bar.is64Bit() ? BASE_ADDRESS_MEM_TYPE_64 : 0)
                        | (bar.prefetchable() ? BASE_ADDRESS_MEM_PREFETCH : 0);
                setV(at, (vbytes(at, 4) & (int) mask) | flags);
                if (bar.is64Bit() && i < 5) {
                    setV(at + 4, vbytes(at + 4, 4) & (int) (mask >>> 32));
                    i++;
                }
            } else {
                setV(at, 0);
            }
        }
        setV(ROM_ADDRESS, 0);
    }

    private void setV(int at, int value) {
        for (int b = 0; b < 4; b++) {
            vconfig[at + b] = (byte) (value >>> (8 * b));
        }
    }
}
