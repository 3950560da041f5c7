package dev.dmaplane.hw;

import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A device model's DMA over its function's {@link BusMaster} ({@code vfu_dma_read}/{@code vfu_dma_write},
 * QEMU's {@code pci_dma_read}/{@code pci_dma_write}), with scatter/gather. Each operation returns a
 * {@link DmaStatus}: a refusal by the IOMMU or the fabric stops the operation where it happened and becomes a
 * status the model reports to its driver, never an exception in the model and never a byte outside the mapping.
 * <p>
 * A transfer touching one of the function's own register BARs is refused before it starts ({@code EPERM}): a
 * device DMA that lands in its own registers re-enters the model in the middle of an operation, the bug class of
 * QEMU's CVE-2021-3929 (an NVMe controller DMA-ing into its own MMIO), which QEMU closed with a re-entrancy guard.
 */
public final class ModelDma {
    private final PciFunction function;
    private final AtomicLong faults = new AtomicLong();

    private ModelDma(PciFunction function) {
        this.function = function;
    }

    /** The DMA side of {@code function}'s device model. */
    public static ModelDma of(PciFunction function) {
        if (function == null) {
            throw new ErrnoException(Errno.EINVAL, "ModelDma needs a PCI function, not null");
        }
        return new ModelDma(function);
    }

    /** The device reads {@code dst.byteSize()} bytes at {@code busAddr} into {@code dst}. */
    public DmaStatus read(long busAddr, MemorySegment dst) {
        return gather(List.of(new DmaSpan(busAddr, requireBuffer(dst).byteSize())), dst);
    }

    /** The device writes all of {@code src} at {@code busAddr}. */
    public DmaStatus write(long busAddr, MemorySegment src) {
        return scatter(src, List.of(new DmaSpan(busAddr, requireBuffer(src).byteSize())));
    }

    /**
     * Gathers the spans of {@code sg}, in order, into {@code dst}.
     *
     * @throws ErrnoException {@code EINVAL} if the spans do not add up to {@code dst.byteSize()}: a model bug, not a
     *                        device fault
     */
    public DmaStatus gather(List<DmaSpan> sg, MemorySegment dst) {
        return transfer(sg, dst, false);
    }

    /**
     * Scatters {@code src}, in order, over the spans of {@code sg}.
     *
     * @throws ErrnoException {@code EINVAL} if the spans do not add up to {@code src.byteSize()}
     */
    public DmaStatus scatter(MemorySegment src, List<DmaSpan> sg) {
        return transfer(sg, src, true);
    }

    /** Operations that ended in a {@link DmaStatus.Fault}. */
    public long faults() {
        return faults.get();
    }

    private DmaStatus transfer(List<DmaSpan> sg, MemorySegment buf, boolean write) {
        requireBuffer(buf);
        if (sg == null) {
            throw new ErrnoException(Errno.EINVAL, function.bdf() + ": a DMA transfer needs a scatter/gather list");
        }
        long total = 0;
        for (DmaSpan s : sg) {
            total += s.length();
        }
        if (total != buf.byteSize()) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: scatter/gather list of %d bytes for a %d-byte buffer",
                    function.bdf(), total, buf.byteSize()));
        }
        for (DmaSpan s : sg) {
            String own = ownRegisters(s);
            if (own != null) {
                return fault(s.busAddr(), 0, Errno.EPERM, own);
            }
        }
        BusMaster bm;
        try {
            bm = function.dma().busMaster();
        } catch (ErrnoException gone) {
            return fault(sg.isEmpty() ? 0 : sg.getFirst().busAddr(), 0, gone.errno(), gone.getMessage());
        }
        long at = 0;
        for (DmaSpan s : sg) {
            MemorySegment part = buf.asSlice(at, s.length());
            try {
                if (write) {
                    bm.write(s.busAddr(), part);
                } else {
                    bm.read(s.busAddr(), part);
                }
            } catch (ErrnoException e) {
                return fault(s.busAddr(), at, e.errno(), e.getMessage());
            }
            at += s.length();
        }
        return new DmaStatus.Done(total);
    }

    private MemorySegment requireBuffer(MemorySegment buf) {
        if (buf == null) {
            throw new ErrnoException(Errno.EINVAL, function.bdf() + ": a DMA transfer needs a buffer");
        }
        return buf;
    }

    /** Which register BAR of this function {@code s} touches, as a reason, or null. */
    private String ownRegisters(DmaSpan s) {
        for (Bar b : function.bars()) {
            long base = b.address();
            if (b.backing() instanceof Bar.Mmio && base != 0
                    && Long.compareUnsigned(s.busAddr(), base + b.size() - 1) <= 0
                    && Long.compareUnsigned(s.busAddr() + s.length() - 1, base) >= 0) {
                return String.format("%s: DMA at %#x (%d bytes) would reach its own register BAR%d at %#x",
                        function.bdf(), s.busAddr(), s.length(), b.index(), base);
            }
        }
        return null;
    }

    private DmaStatus fault(long busAddr, long moved, Errno errno, String reason) {
        faults.incrementAndGet();
        return new DmaStatus.Fault(busAddr, moved, errno, reason);
    }
}
