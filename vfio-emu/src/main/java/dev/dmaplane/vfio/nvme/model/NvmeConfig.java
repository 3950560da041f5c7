package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A controller's settings from the machine file's {@code properties:} (QEMU's {@code -device nvme} properties).
 *
 * @param namespaces    active namespaces, IDs 1..n (1 to 1024)
 * @param namespaceSize bytes per namespace, a multiple of the LBA size
 * @param lbaShift      log2 of the logical block size: 9 (512 bytes) or 12 (4 KiB)
 * @param namespaceFile a host file holding the namespaces back to back, or empty for memfds
 * @param ioQueues      I/O queue pairs the controller can allocate (1 to 511)
 * @param maxEntries    entries of the largest queue (CAP.MQES + 1), 2 to 65536
 * @param mdts          Identify Controller MDTS: transfers up to {@code 2^mdts} 4 KiB pages, 0 for no limit
 * @param dstrd         CAP.DSTRD: doorbells {@code 4 << dstrd} bytes apart
 * @param cmbBar        the memory BAR (2 to 5) offered as a controller memory buffer, or -1 for none
 * @param cmbSupport    what CMBSZ says the buffer holds (bits 4:0: SQS 1, CQS 2, LISTS 4, RDS 8, WDS 16), written
 *                      in decimal; 29 (SQS, LISTS, RDS, WDS) unless given
 */
record NvmeConfig(int namespaces, long namespaceSize, int lbaShift, Optional<Path> namespaceFile, int ioQueues,
                  int maxEntries, int mdts, int dstrd, int cmbBar, int cmbSupport) {
    /** CMBSZ SQS, LISTS, RDS and WDS, the buffer's default support bits. */
    static final int CMB_SUPPORT = 29;
    private static final Set<String> KEYS = Set.of("namespaces", "namespaceSize", "lbaSize", "namespaceFile",
            "ioQueues", "maxQueueEntries", "mdts", "doorbellStride", "cmbBar", "cmbSupport");
    private static final Pattern SIZE = Pattern.compile("(\\d+)\\s*(|K|KiB|M|MiB|G|GiB|T|TiB)");

    /**
     * Reads {@code props}; absent keys take QEMU-like defaults (1 namespace of 1 GiB, 512-byte blocks, 64 I/O queue
     * pairs of up to 1024 entries, MDTS 5, stride 0, no controller memory buffer).
     *
     * @throws ErrnoException {@code EINVAL} naming the property and its value for an unknown key or a bad value
     */
    static NvmeConfig parse(String where, Map<String, String> props) {
        for (String k : props.keySet()) {
            if (!KEYS.contains(k)) {
                throw bad(where, k, props.get(k), "unknown property; known are " + KEYS.stream().sorted().toList());
            }
        }
        int namespaces = (int) number(where, props, "namespaces", 1, 1, 1024);
        int lbaSize = (int) number(where, props, "lbaSize", 512, 512, 4096);
        if (lbaSize != 512 && lbaSize != 4096) {
            throw bad(where, "lbaSize", props.get("lbaSize"), "the LBA formats are 512 and 4096 bytes");
        }
        int lbaShift = Integer.numberOfTrailingZeros(lbaSize);
        long nsSize = props.containsKey("namespaceSize") ? size(where, props.get("namespaceSize")) : 1L << 30;
        if (nsSize < lbaSize || nsSize % lbaSize != 0 || nsSize > 1L << 40) {
            throw bad(where, "namespaceSize", props.get("namespaceSize"), "must be a positive multiple of the "
                    + lbaSize + "-byte LBA size, at most 1 TiB");
        }
        Optional<Path> file = Optional.ofNullable(props.get("namespaceFile")).map(f -> {
            if (f.isBlank()) {
                throw bad(where, "namespaceFile", f, "must be a host file path");
            }
            return Path.of(f);
        });
        int ioQueues = (int) number(where, props, "ioQueues", 64, 1, 511);
        int maxEntries = (int) number(where, props, "maxQueueEntries", 1024, 2, 65536);
        int mdts = (int) number(where, props, "mdts", 5, 0, 12);
        int dstrd = (int) number(where, props, "doorbellStride", 0, 0, 15);
        int cmbBar = (int) number(where, props, "cmbBar", -1, 2, 5);
        int cmbSupport = (int) number(where, props, "cmbSupport", CMB_SUPPORT, 0, 31);
        return new NvmeConfig(namespaces, nsSize, lbaShift, file, ioQueues, maxEntries, mdts, dstrd, cmbBar,
                cmbSupport);
    }

    /** Bytes of one logical block. */
    int lbaSize() {
        return 1 << lbaShift;
    }

    /** The largest transfer in bytes, or {@code Long.MAX_VALUE} without a limit. */
    long maxTransfer() {
        return mdts == 0 ? Long.MAX_VALUE : 4096L << mdts;
    }

    /** One past the last doorbell the controller decodes. */
    long doorbellEnd() {
        return 0x1000L + 2L * (ioQueues + 1) * (4L << dstrd);
    }

    private static long number(String where, Map<String, String> props, String key, long dflt, long min, long max) {
        String v = props.get(key);
        if (v == null) {
            return dflt;
        }
        long n;
        try {
            n = Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw bad(where, key, v, "not a decimal number");
        }
        if (n < min || n > max) {
            throw bad(where, key, v, "outside " + min + ".." + max);
        }
        return n;
    }

    private static long size(String where, String v) {
        Matcher m = SIZE.matcher(v.trim());
        if (!m.matches()) {
            throw bad(where, "namespaceSize", v, "a size is bytes or a number with K/KiB, M/MiB, G/GiB or T/TiB");
        }
        int shift = switch (m.group(2).toUpperCase(Locale.ROOT)) {
            case "K", "KIB" -> 10;
            case "M", "MIB" -> 20;
            case "G", "GIB" -> 30;
            case "T", "TIB" -> 40;
            default -> 0;
        };
        long n;
        try {
            n = Long.parseLong(m.group(1));
        } catch (NumberFormatException e) {
            throw bad(where, "namespaceSize", v, "too large");
        }
        if (n > Long.MAX_VALUE >> shift) {
            throw bad(where, "namespaceSize", v, "too large");
        }
        return n << shift;
    }

    private static ErrnoException bad(String where, String key, String value, String why) {
        return new ErrnoException(Errno.EINVAL, where + ": property " + key + " '" + value + "': " + why);
    }
}
