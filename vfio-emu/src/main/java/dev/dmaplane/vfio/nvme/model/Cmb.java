package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DmaStatus;
import dev.dmaplane.pci.Bar;

import java.lang.foreign.MemorySegment;

import static dev.dmaplane.vfio.nvme.NvmeRegs.*;

/**
 * The controller memory buffer (NVM Express Base Specification 2.0, 8.2; QEMU's {@code nvme_init_cmb}): a memory
 * BAR of the controller that hosts queues, PRP lists and data. CMBLOC and CMBSZ read zero until the host sets
 * CMBMSC.CRE; with CMBMSC.CMSE set the controller reaches addresses from CMBMSC's base on in its own memory, not
 * over the bus, as {@code nvme_map_cmb} in {@code drivers/nvme/host/pci.c} arranges before offering the BAR as
 * p2pmem. Guarded by the controller's lock; CMBMSC is volatile, as the command engines read it without the lock.
 */
final class Cmb {
    /** CMBSZ.SZU 2: sizes in MiB. */
    private static final int SZU_MIB = 2;

    final int bar;
    private final Bar.Memory memory;
    /** CMBSZ bits 4:0, what the buffer may hold. */
    private final int support;
    private final long size;
    private volatile long msc;

    /**
     * @param support CMBSZ bits 4:0 (SQS, CQS, LISTS, RDS, WDS) as reported; the model moves data in the buffer
     *                whichever are set (a host that puts data there against RDS or WDS clear gets it moved anyway)
     */
    Cmb(int bar, Bar.Memory memory, int support, String where) {
        if (memory.size() < 1L << 20) {
            throw new ErrnoException(Errno.EINVAL, where + ": a controller memory buffer in BAR" + bar + " of "
                    + memory.size() + " bytes; it needs at least 1 MiB");
        }
        this.bar = bar;
        this.memory = memory;
        this.size = memory.size();
        this.support = support & 0x1f;
    }

    long msc() {
        return msc;
    }

    void msc(long value) {
        msc = value & (~0xfffL | CMBMSC_CRE | CMBMSC_CMSE);
    }

    void reset() {
        msc = 0;
    }

    int cmbloc() {
        return (msc & CMBMSC_CRE) == 0 ? 0 : bar;
    }

    int cmbsz() {
        return (msc & CMBMSC_CRE) == 0 ? 0 : support | SZU_MIB << CMBSZ_SZU_SHIFT
                | (int) (size >>> 20) << CMBSZ_SZ_SHIFT;
    }

    /** Whether {@code length} bytes at {@code addr} lie in the enabled buffer. */
    boolean contains(long addr, long length) {
        long base = msc & ~0xfffL;
        return (msc & CMBMSC_CMSE) != 0 && Long.compareUnsigned(addr, base) >= 0
                && Long.compareUnsigned(addr - base, size) < 0 && length <= size - (addr - base);
    }

    DmaStatus read(long addr, MemorySegment dst) {
        memory.read(addr - (msc & ~0xfffL), dst);
        return new DmaStatus.Done(dst.byteSize());
    }

    DmaStatus write(long addr, MemorySegment src) {
        memory.write(addr - (msc & ~0xfffL), src);
        return new DmaStatus.Done(src.byteSize());
    }
}
