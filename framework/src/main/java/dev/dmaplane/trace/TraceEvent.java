package dev.dmaplane.trace;

/**
 * One structured trace record, the dmaplane counterpart of a kernel tracepoint.
 *
 * @param seq       position in the machine's trace, starting at 1, without gaps
 * @param timeNanos {@link System#nanoTime()} when the event was emitted
 * @param kind      what happened
 * @param device    the device (or subsystem) it happened to, e.g. {@code 0000:01:00.0}
 * @param address   the address it concerns (IOVA, physical or virtual, as the kind says), or -1
 * @param length    the length in bytes it concerns, or 0
 * @param detail    a human-readable remainder (permissions, direction, the reason of a fault ...)
 */
public record TraceEvent(long seq, long timeNanos, TraceKind kind, String device, long address, long length,
                         String detail) {

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder();
        sb.append('#').append(seq).append(' ').append(kind).append(' ').append(device);
        if (address >= 0) {
            sb.append(" addr=0x").append(Long.toHexString(address));
        }
        if (length > 0) {
            sb.append(" len=").append(length);
        }
        if (detail != null && !detail.isEmpty()) {
            sb.append(' ').append(detail);
        }
        return sb.toString();
    }
}
