package dev.dmaplane.dma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * A device memory access that was refused (IOMMU fault or bus error). Carries what the IOMMU fault record holds:
 * the device, the bus address and whether it was a write.
 */
public final class DmaFaultException extends ErrnoException {
    private static final long serialVersionUID = 1L;

    private final String device;
    private final long busAddr;
    private final boolean write;
    private final FaultReason reason;

    public DmaFaultException(String device, long busAddr, boolean write, FaultReason reason, String detail) {
        super(Errno.EFAULT, device + ": DMA " + (write ? "write" : "read") + " at 0x" + Long.toHexString(busAddr)
                + " refused: " + detail);
        this.device = device;
        this.busAddr = busAddr;
        this.write = write;
        this.reason = reason;
    }

    /** Why the transaction was refused. */
    public FaultReason reason() {
        return reason;
    }

    public String device() {
        return device;
    }

    public long busAddr() {
        return busAddr;
    }

    public boolean isWrite() {
        return write;
    }
}
