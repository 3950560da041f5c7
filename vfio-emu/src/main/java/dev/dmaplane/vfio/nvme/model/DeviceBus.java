package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.hw.DmaSpan;
import dev.dmaplane.hw.DmaStatus;
import dev.dmaplane.hw.ModelDma;

import java.lang.foreign.MemorySegment;
import java.util.List;

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

    DmaStatus gather(List<DmaSpan> sg, MemorySegment dst) {
        return cmb == null ? dma.gather(sg, dst) : each(sg, dst, false);
    }

    DmaStatus scatter(MemorySegment src, List<DmaSpan> sg) {
        return cmb == null ? dma.scatter(src, sg) : each(sg, src, true);
    }

    private DmaStatus each(List<DmaSpan> sg, MemorySegment buf, boolean write) {
        long at = 0;
        for (DmaSpan s : sg) {
            MemorySegment part = buf.asSlice(at, s.length());
            DmaStatus st = write ? write(s.busAddr(), part) : read(s.busAddr(), part);
            if (st instanceof DmaStatus.Fault f) {
                return new DmaStatus.Fault(f.busAddr(), at + f.moved(), f.errno(), f.reason());
            }
            at += s.length();
        }
        return new DmaStatus.Done(at);
    }
}
