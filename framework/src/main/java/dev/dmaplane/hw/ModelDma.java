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
        return one(busAddr, requireBuffer(dst), false);
    }

    /** The device writes all of {@code src} at {@code busAddr}. */
    public DmaStatus write(long busAddr, MemorySegment src) {
        return one(busAddr, requireBuffer(src), true);
    }

    /**
     * Whether a read ({@code write} false) or a write of {@code length} bytes at {@code busAddr} would go through,
     * with every check of {@link #read}/{@link #write} and no byte moved ({@link BusMaster#probe}): a device that
     * must not change its own memory unless the whole transfer can complete asks first.
     *
     * @throws ErrnoException {@code EINVAL} for a length below 1 or a range that wraps the address space
     */
    public DmaStatus probe(long busAddr, long length, boolean write) {
        if (length <= 0 || Long.compareUnsigned(busAddr + length - 1, busAddr) < 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: probe of %d bytes at %#x", function.bdf(),
                    length, busAddr));
        }
        String own = ownRegisters(busAddr, length);
        if (own != null) {
            return fault(busAddr, 0, Errno.EPERM, own);
        }
        try {
            function.dma().busMaster().probe(busAddr, length, write);
        } catch (ErrnoException e) {
            return fault(busAddr, 0, e.errno(), e.getMessage());
        }
        return new DmaStatus.Done(0);
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
            String own = ownRegisters(s.busAddr(), s.length());
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

    /** {@link #transfer} of one span, with no list built: the common single-buffer read or write. */
    private DmaStatus one(long busAddr, MemorySegment buf, boolean write) {
        long len = buf.byteSize();
        new DmaSpan(busAddr, len); // the span's own checks (empty or wrapping: a model bug, EINVAL)
        String own = ownRegisters(busAddr, len);
        if (own != null) {
            return fault(busAddr, 0, Errno.EPERM, own);
        }
        try {
            BusMaster bm = function.dma().busMaster();
            if (write) {
                bm.write(busAddr, buf);
            } else {
                bm.read(busAddr, buf);
            }
        } catch (ErrnoException e) {
            return fault(busAddr, 0, e.errno(), e.getMessage());
        }
        return new DmaStatus.Done(len);
    }

    private MemorySegment requireBuffer(MemorySegment buf) {
        if (buf == null) {
            throw new ErrnoException(Errno.EINVAL, function.bdf() + ": a DMA transfer needs a buffer");
        }
        return buf;
    }

    /** Which register BAR of this function {@code [busAddr, busAddr + length)} touches, as a reason, or null. */
    private String ownRegisters(long busAddr, long length) {
        for (Bar b : function.bars()) {
            if (!(b.backing() instanceof Bar.Mmio)) {
                continue;
            }
            long base = b.address();
            if (base != 0 && Long.compareUnsigned(busAddr, base + b.size() - 1) <= 0
                    && Long.compareUnsigned(busAddr + length - 1, base) >= 0) {
                return String.format("%s: DMA at %#x (%d bytes) would reach its own register BAR%d at %#x",
                        function.bdf(), busAddr, length, b.index(), base);
            }
        }
        return null;
    }

    private DmaStatus fault(long busAddr, long moved, Errno errno, String reason) {
        faults.incrementAndGet();
        return new DmaStatus.Fault(busAddr, moved, errno, reason);
    }
}
