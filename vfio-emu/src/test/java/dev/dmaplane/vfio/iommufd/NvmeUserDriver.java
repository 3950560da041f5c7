package dev.dmaplane.vfio.iommufd;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.vfio.VfioDevice;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import dev.dmaplane.vfio.nvme.NvmeRegs;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.vfio.VfioUapi.VFIO_PCI_BAR0_REGION_INDEX;
import static dev.dmaplane.vfio.VfioUapi.VFIO_PCI_CONFIG_REGION_INDEX;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;

/**
 * An SPDK-style user-space NVMe driver over iommufd, for the tests: the device cdev bound and attached, queues and
 * buffers in the process's anonymous memory mapped into the IOAS at the IOVA the kernel picks, registers
 * through the device file's BAR0 region, one polled I/O queue pair, commands waited for with a bounded poll of the
 * phase tag. In the order of {@code drivers/nvme/host/pci.c}'s bring-up: memory space and bus mastering, disable,
 * AQA/ASQ/ACQ, enable and CSTS.RDY, Create I/O CQ (IEN 0) and SQ.
 */
final class NvmeUserDriver {
    static final long TIMEOUT_MS = 10_000;
    static final long PAGE = 4096;
    static final int ENTRIES = 32;
    static final int IO_QID = 1;
    private static final int PCI_COMMAND = 4;
    private static final int COMMAND_MEMORY = 1 << 1;
    private static final int COMMAND_MASTER = 1 << 2;

    private final AddressSpace mm;
    private final Iommufd fd;
    private final VfioDevice dev;
    private final int ioas;
    private final int dstrd;
    private final Queue admin;
    private final Queue io;

    /** Memory of the process mapped for the device: its address and its IOVA. */
    record Buf(long va, long iova) {
        /** The address of byte {@code offset}. */
        long va(long offset) {
            return va + offset;
        }

        /** The IOVA of byte {@code offset}. */
        long iova(long offset) {
            return iova + offset;
        }
    }

    /** One queue pair: the SQ tail the driver writes, the CQ head and phase it expects. */
    private final class Queue {
        final int qid;
        final Buf sq;
        final Buf cq;
        int tail;
        int head;
        boolean phase = true;
        int cids;

        Queue(int qid) {
            this.qid = qid;
            this.sq = buffer(ENTRIES * (long) NvmeCommand.SIZE);
            this.cq = buffer(ENTRIES * (long) NvmeCompletion.SIZE);
        }
    }

    /**
     * Brings the controller up through {@code cdev}, already bound, whose page table maps IOAS {@code ioas}
     * (attached by the caller to the IOAS or to an HWPT over it).
     */
    NvmeUserDriver(AddressSpace mm, Iommufd fd, DeviceCdev cdev, int ioas) {
        this.mm = mm;
        this.fd = fd;
        this.dev = cdev.device();
        this.ioas = ioas;
        int cmd = (int) dev.read(VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, 2);
        dev.write(VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, 2, cmd | COMMAND_MEMORY | COMMAND_MASTER);
        long cap = dev.read(VFIO_PCI_BAR0_REGION_INDEX, NvmeRegs.CAP, 8);
        dstrd = NvmeRegs.capDstrd(cap);
        admin = new Queue(0);
        disable();
        reg(NvmeRegs.AQA, 4, NvmeRegs.aqa(ENTRIES, ENTRIES));
        reg(NvmeRegs.ASQ, 8, admin.sq.iova());
        reg(NvmeRegs.ACQ, 8, admin.cq.iova());
        reg(NvmeRegs.CC, 4, NvmeRegs.ccEnable(0));
        waitCsts(NvmeRegs.CSTS_RDY, NvmeRegs.CSTS_RDY);
        io = new Queue(IO_QID);
        require(admin(NvmeCommand.createCq(0, IO_QID, ENTRIES, io.cq.iova(), 0, false)), "Create I/O CQ");
        require(admin(NvmeCommand.createSq(0, IO_QID, ENTRIES, io.sq.iova(), IO_QID)), "Create I/O SQ");
    }

    /** Zeroed anonymous memory of {@code bytes}, mapped into the IOAS where the kernel places it. */
    Buf buffer(long bytes) {
        long size = (bytes + PAGE - 1) & -PAGE;
        long va = mm.mmapAnonymous(size, Prot.PROT_READ | Prot.PROT_WRITE);
        mm.write(va, MemorySegment.ofArray(new byte[(int) size]));
        return new Buf(va, fd.map(ioas, va, size, 0, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE));
    }

    private void reg(int offset, int size, long value) {
        dev.write(VFIO_PCI_BAR0_REGION_INDEX, offset, size, value);
    }

    /** CC.EN cleared and CSTS.RDY seen clear. */
    void disable() {
        if ((dev.read(VFIO_PCI_BAR0_REGION_INDEX, NvmeRegs.CC, 4) & NvmeRegs.CC_EN) != 0) {
            reg(NvmeRegs.CC, 4, 0);
        }
        waitCsts(NvmeRegs.CSTS_RDY, 0);
    }

    private void waitCsts(int mask, int value) {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TIMEOUT_MS);
        while ((dev.read(VFIO_PCI_BAR0_REGION_INDEX, NvmeRegs.CSTS, 4) & mask) != value) {
            if (System.nanoTime() > deadline) {
                throw new ErrnoException(Errno.ETIMEDOUT, "CSTS never showed " + value + " under " + mask);
            }
            Thread.yield();
        }
    }

    private NvmeCompletion run(Queue q, NvmeCommand c) {
        NvmeCommand cmd = c.withCid(++q.cids & 0xffff | 0x100);
        MemorySegment sqe = MemorySegment.ofArray(new byte[NvmeCommand.SIZE]);
        cmd.writeTo(sqe);
        mm.write(q.sq.va((long) q.tail * NvmeCommand.SIZE), sqe);
        q.tail = (q.tail + 1) % ENTRIES;
        reg((int) NvmeRegs.sqTailDoorbell(q.qid, dstrd), 4, q.tail);
        MemorySegment cqe = MemorySegment.ofArray(new byte[NvmeCompletion.SIZE]);
        long slot = q.cq.va((long) q.head * NvmeCompletion.SIZE);
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TIMEOUT_MS);
        while (true) {
            mm.read(slot, cqe);
            if (NvmeCompletion.phaseOf(cqe) == q.phase) {
                break;
            }
            if (System.nanoTime() > deadline) {
                throw new ErrnoException(Errno.ETIMEDOUT, "no completion on CQ " + q.qid + " for " + cmd + "; CSTS "
                        + dev.read(VFIO_PCI_BAR0_REGION_INDEX, NvmeRegs.CSTS, 4));
            }
            Thread.yield();
        }
        NvmeCompletion done = NvmeCompletion.readFrom(cqe);
        q.head = (q.head + 1) % ENTRIES;
        if (q.head == 0) {
            q.phase = !q.phase;
        }
        reg((int) NvmeRegs.cqHeadDoorbell(q.qid, dstrd), 4, q.head);
        if (done.cid() != cmd.cid()) {
            throw new ErrnoException(Errno.EIO, "completion " + done + " for command " + cmd);
        }
        return done;
    }

    NvmeCompletion admin(NvmeCommand c) {
        return run(admin, c);
    }

    /** Read or Write of {@code blocks} LBAs from {@code slba} of namespace 1 with PRP1/PRP2 as given (IOVAs). */
    NvmeCompletion io(int opcode, long slba, int blocks, long prp1, long prp2) {
        return run(io, NvmeCommand.readWrite(opcode, 0, 1, slba, blocks, prp1, prp2));
    }

    /** The I/O completion queue: the controller writes completions into it. */
    Buf ioCq() {
        return io.cq;
    }

    private static void require(NvmeCompletion c, String what) {
        if (!c.ok()) {
            throw new ErrnoException(Errno.EIO, what + ": " + c);
        }
    }
}
