package dev.dmaplane.dma;

import java.util.Arrays;
import java.util.List;

/**
 * One finding of dma-debug ({@code kernel/dma/debug.c}): what was wrong, on which device and address, and where
 * the mapping concerned was made.
 *
 * @param kind     the kind of misuse
 * @param device   the device
 * @param address  the bus address concerned
 * @param size     the size concerned
 * @param message  the full explanation, naming the bad values
 * @param mapSite  the stack of the call that made the mapping (empty when unknown)
 */
public record DmaDebugReport(Kind kind, String device, long address, long size, String message,
                             List<StackTraceElement> mapSite) {

    /** What dma-debug found. */
    public enum Kind {
        /** Unmap or sync of an address the device never mapped ("has not allocated"). */
        UNKNOWN_ADDRESS,
        /** Unmap of an address that was already unmapped. */
        DOUBLE_UNMAP,
        /** Unmap or sync with a size other than the mapping's. */
        SIZE_MISMATCH,
        /** Unmap or sync with a direction other than the mapping's. */
        DIRECTION_MISMATCH,
        /** A mapping made with {@code DMA_NONE} or a sync against the mapping's direction. */
        BAD_DIRECTION,
        /** Unmap of a single mapping through the sg call or the reverse. */
        TYPE_MISMATCH,
        /** Mappings still held when the driver was unbound ("pending DMA allocations"). */
        LEAK_AT_UNBIND,
        /** The device accessed a bus address no live mapping covers. */
        ACCESS_UNMAPPED,
        /** The device wrote to memory mapped only for reading ({@code DMA_TO_DEVICE}). */
        ACCESS_READ_ONLY,
        /** The device accessed a mapping its owner still holds but whose access was revoked ({@link DmaApi#revokeSg}). */
        ACCESS_REVOKED,
        /** A mapped sg segment longer than the device's {@code max_segment_size} ({@code check_sg_segment}). */
        SEGMENT_TOO_LONG,
        /** A mapped sg segment crossing the device's segment boundary ({@code check_sg_segment}). */
        SEGMENT_BOUNDARY
    }

    public DmaDebugReport {
        mapSite = mapSite == null ? List.of() : List.copyOf(mapSite);
    }

    static List<StackTraceElement> siteOf(Throwable t) {
        return t == null ? List.of() : Arrays.asList(t.getStackTrace());
    }

    /** The report with the mapping site, like dma-debug's "mapped at" stack dump. */
    public String describe() {
        StringBuilder sb = new StringBuilder("DMA-API: ").append(device).append(": ").append(message);
        if (!mapSite.isEmpty()) {
            sb.append("\n  mapped at:");
            for (StackTraceElement e : mapSite) {
                sb.append("\n    ").append(e);
            }
        }
        return sb.toString();
    }
}
