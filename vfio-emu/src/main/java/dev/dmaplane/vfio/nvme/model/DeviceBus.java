package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.hw.DmaStatus;
import dev.dmaplane.hw.ModelDma;

import java.lang.foreign.MemorySegment;

/**
 * Where the controller's transfers go (QEMU's {@code nvme_addr_read}/{@code nvme_addr_write}): its own controller
 * memory buffer when an address lies in it, host memory through the SDK's {@link ModelDma} otherwise.
 */
final class DeviceBus {
    private final ModelDma dma;
    private final Cmb cmb;

    /** @param cmb the controller memory buffer, or null */
    DeviceBus(ModelDma dma, Cmb cmb) {
        this.dma = dma;
        this.cmb = cmb;
    }

    DmaStatus read(long addr, MemorySegment dst) {
        return cmb != null && cmb.contains(addr, dst.byteSize()) ? cmb.read(addr, dst) : dma.read(addr, dst);
    }

    DmaStatus write(long addr, MemorySegment src) {
        return cmb != null && cmb.contains(addr, src.byteSize()) ? cmb.write(addr, src) : dma.write(addr, src);
    }

    /**
     * Whether the device may read ({@code write} false) or write {@code length} bytes at {@code addr}, nothing
     * moved: always inside the controller memory buffer, else as {@link ModelDma#probe} answers.
     */
    DmaStatus probe(long addr, long length, boolean write) {
        return cmb != null && cmb.contains(addr, length) ? new DmaStatus.Done(0) : dma.probe(addr, length, write);
    }
}
