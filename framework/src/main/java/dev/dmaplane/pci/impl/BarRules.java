package dev.dmaplane.pci.impl;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.MachineSpec.BarKind;
import dev.dmaplane.pci.MachineSpec.BarSpec;
import dev.dmaplane.pci.MachineSpec.FunctionSpec;
import dev.dmaplane.pci.MachineSpec.MsixSpec;
import dev.dmaplane.pci.PciPortType;
import dev.dmaplane.pci.PciRegs;
import dev.dmaplane.pci.TopologyLoader;

import java.util.List;

/**
 * The numeric rules a function's memory BARs and MSI-X capability must follow before anything sizes, aligns or
 * places them (PCI Local Bus Spec 3.0 section 6.2.5.1, PCI Express Base Spec section 7.5.1.2.1, the MSI-X table
 * rules of section 7.7.2): checked by the machine-file parser and again before a topology is planned, so a spec built
 * in code is held to the same rules. Each error is {@code EINVAL} naming the path of the field and its value. The
 * public predicates are the rules themselves, which {@code ConfigSpace.Builder} and {@code Bar} check as well, each
 * with its own message.
 */
public final class BarRules {
    private static final long MAX_32BIT_BAR = 1L << 31;
    /** MSI-X Table Size is an 11-bit field holding N - 1 ({@code PCI_MSIX_FLAGS_QSIZE}). */
    private static final int MSIX_MAX_VECTORS = 2048;

    private BarRules() {
    }

    /**
     * Checks {@code fn}'s BARs and MSI-X capability; {@code path} is the function's path in the machine file.
     *
     * @throws ErrnoException {@code EINVAL} naming the first bad field, e.g. {@code ...bars[1].size}
     */
    public static void check(FunctionSpec fn, String path) {
        List<BarSpec> bars = fn.bars();
        int registers = fn.type().isBridge() ? 2 : 6;
        for (int i = 0; i < bars.size(); i++) {
            checkBar(bars.get(i), fn.type(), registers, path + ".bars[" + i + "]", fn.bdf() + " BAR " + bars.get(i).index());
            for (int j = 0; j < i; j++) {
                if (overlaps(bars.get(i), bars.get(j))) {
                    throw Units.bad(path + ".bars[" + i + "].index", String.valueOf(bars.get(i).index()),
                            "(" + fn.bdf() + ") uses a BAR register bars[" + j + "] (index " + bars.get(j).index() + ") already uses");
                }
            }
        }
        if (fn.msix().isPresent()) {
            checkMsix(fn.msix().get(), bars, path + ".msix", fn.bdf().toString());
        }
    }

    private static void checkBar(BarSpec b, PciPortType type, int registers, String path, String bar) {
        if (b.index() < 0 || lastRegister(b.index(), b.is64Bit()) >= registers) {
            throw Units.bad(path + ".index", String.valueOf(b.index()), "(" + bar + ") is not a BAR register of a " + type.label()
                    + " (0.." + (registers - 1) + (b.is64Bit() ? ", and a 64-bit BAR also takes the next one)" : ")"));
        }
        String size = hex(b.size());
        if (!isBarSize(b.size())) {
            throw Units.bad(path + ".size", size, "(" + bar + ") is not a power of two of at least 4KiB (the BAR size is the"
                    + " alignment its address gets)");
        }
        if (!b.is64Bit() && !fits32Bit(b.size())) {
            throw Units.bad(path + ".size", size, "(" + bar + ") does not fit a 32-bit BAR (at most 2GiB)");
        }
        if (!isPrefetchableAllowed(type, b.is64Bit(), b.prefetchable())) {
            throw Units.bad(path + ".bits", "32", "(" + bar + ") cannot be prefetchable on a PCI Express Endpoint, whose"
                    + " prefetchable BARs must be 64-bit (PCIe Base Spec 7.5.1.2.1); set prefetchable: false or bits: 64");
        }
        boolean high = MmioPlan.isHigh(b);
        long base = high ? TopologyLoader.MMIO64_BASE : TopologyLoader.MMIO32_BASE;
        long limit = high ? TopologyLoader.MMIO64_LIMIT : TopologyLoader.MMIO32_LIMIT;
        long largest = largestAligned(base, limit);
        if (b.size() > largest) {
            throw Units.bad(path + ".size", size, String.format("(%s) does not fit the %s MMIO window %#x-%#x"
                    + " (at most %#x, naturally aligned)", bar, high ? "64-bit prefetchable" : "32-bit", base, limit - 1, largest));
        }
    }

    private static boolean overlaps(BarSpec a, BarSpec b) {
        return a.index() <= lastRegister(b.index(), b.is64Bit()) && b.index() <= lastRegister(a.index(), a.is64Bit());
    }

    private static void checkMsix(MsixSpec m, List<BarSpec> bars, String path, String bdf) {
        if (!isMsixVectorCount(m.vectors())) {
            throw Units.bad(path + ".vectors", String.valueOf(m.vectors()), "(" + bdf + ") is not a vector count from 1 to "
                    + MSIX_MAX_VECTORS);
        }
        BarSpec bar = bars.stream().filter(b -> b.index() == m.bar()).findFirst().orElseThrow(() ->
                Units.bad(path + ".bar", String.valueOf(m.bar()), "names no BAR of " + bdf));
        if (bar.kind() != BarKind.MMIO) {
            throw Units.bad(path + ".bar", String.valueOf(m.bar()), "(" + bdf + ") names a memory BAR; the MSI-X table and"
                    + " PBA are registers and need a BAR of kind mmio");
        }
        long tableBytes = msixTableBytes(m.vectors());
        long pbaBytes = msixPbaBytes(m.vectors());
        checkMsixRegion(path + ".table", m.tableOffset(), tableBytes, bar, bdf);
        checkMsixRegion(path + ".pba", m.pbaOffset(), pbaBytes, bar, bdf);
        if (msixRegionsOverlap(m.tableOffset(), tableBytes, m.pbaOffset(), pbaBytes)) {
            throw Units.bad(path + ".pba", hex(m.pbaOffset()), String.format("(%s) overlaps the MSI-X table at %#x (%d bytes)",
                    bdf, m.tableOffset(), tableBytes));
        }
    }

    private static void checkMsixRegion(String path, long offset, long bytes, BarSpec bar, String bdf) {
        if (!msixRegionFits(offset, bytes, bar.size())) {
            throw Units.bad(path, hex(offset), String.format("(%s) is not an 8-byte aligned offset with its %d bytes"
                    + " inside BAR %d of %#x bytes", bdf, bytes, bar.index(), bar.size()));
        }
    }

    /** Whether {@code size} can be a memory BAR's: a power of two of at least {@link Bar#MIN_SIZE}, its own alignment. */
    public static boolean isBarSize(long size) {
        return size >= Bar.MIN_SIZE && Long.bitCount(size) == 1;
    }

    /** Whether a BAR of {@code size} bytes fits a 32-bit BAR register, whose highest size is 2 GiB. */
    public static boolean fits32Bit(long size) {
        return size <= MAX_32BIT_BAR;
    }

    /**
     * Whether a function of {@code type} may have a BAR of this width and prefetchability: a PCI Express Endpoint's
     * prefetchable BARs must be 64-bit (PCIe Base Spec 7.5.1.2.1); {@code type} is null for a conventional function.
     */
    public static boolean isPrefetchableAllowed(PciPortType type, boolean is64Bit, boolean prefetchable) {
        return !(prefetchable && !is64Bit && type == PciPortType.ENDPOINT);
    }

    /** The last BAR register a BAR at {@code index} takes: a 64-bit BAR also takes the next one. */
    public static int lastRegister(int index, boolean is64Bit) {
        return is64Bit ? index + 1 : index;
    }

    /** Whether MSI-X Table Size can hold {@code vectors}: 1..2048. */
    public static boolean isMsixVectorCount(int vectors) {
        return vectors >= 1 && vectors <= MSIX_MAX_VECTORS;
    }

    /** Bytes of an MSI-X table of {@code vectors} entries. */
    public static long msixTableBytes(int vectors) {
        return (long) vectors * PciRegs.MSIX_ENTRY_SIZE;
    }

    /** Bytes of the Pending Bit Array of {@code vectors} vectors: one bit each, in whole qwords. */
    public static long msixPbaBytes(int vectors) {
        return ((vectors + 63L) / 64) * 8;
    }

    /**
     * Whether an MSI-X table or PBA of {@code bytes} at {@code offset} is 8-byte aligned (the low 3 bits of its
     * register hold the BIR), inside a BAR of {@code barSize} bytes, and within the register's 32 bits.
     */
    public static boolean msixRegionFits(long offset, long bytes, long barSize) {
        return offset >= 0 && (offset & 7) == 0 && offset <= barSize - bytes && offset <= 0xFFFF_FFF8L;
    }

    /** Whether the MSI-X table and PBA share a byte. */
    public static boolean msixRegionsOverlap(long table, long tableBytes, long pba, long pbaBytes) {
        return table < pba + pbaBytes && pba < table + tableBytes;
    }

    /** The largest power of two that fits {@code [base, limit)} at an address aligned to itself. */
    static long largestAligned(long base, long limit) {
        for (long size = Long.highestOneBit(limit - base); size > 0; size >>>= 1) {
            long at = (base + size - 1) & -size;
            if (at >= base && at <= limit - size) {
                return size;
            }
        }
        return 0;
    }

    private static String hex(long v) {
        return "0x" + Long.toHexString(v);
    }
}
