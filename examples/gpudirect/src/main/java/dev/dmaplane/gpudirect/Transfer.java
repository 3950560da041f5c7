package dev.dmaplane.gpudirect;

/**
 * One measured delivery of {@code bytes} into VRAM: wall time, the process's CPU time, and what the bus counted
 * while it ran.
 *
 * @param path              {@code p2p} or {@code bounce}
 * @param hostBytesWritten  bytes written into RAM by DMA during the transfer
 * @param peerBytesWritten  bytes written by one device into another's BAR (peer-to-peer)
 */
public record Transfer(String path, long bytes, long nanos, long cpuNanos, long hostBytesWritten,
                       long peerBytesWritten) {
    /** MiB per second delivered. */
    public double mibPerSecond() {
        return bytes / (double) (1 << 20) / (nanos / 1e9);
    }

    /** CPU milliseconds of the whole process per GiB delivered. */
    public double cpuMillisPerGiB() {
        return cpuNanos / 1e6 / (bytes / (double) (1L << 30));
    }

    /** Host bytes written per byte delivered: 0 peer-to-peer, 1 through a bounce buffer. */
    public double hostBytesPerByte() {
        return hostBytesWritten / (double) bytes;
    }
}
