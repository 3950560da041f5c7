package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.PageCopy;
import dev.dmaplane.hw.DmaStatus;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeStatus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static dev.dmaplane.vfio.nvme.NvmeCommand.*;

/**
 * The NVM command set on I/O queues (NVM Command Set Specification 1.0, 3; QEMU's {@code nvme_io_cmd}): Read,
 * Write, Flush, Write Zeroes and Dataset Management. Data moves in one copy, as a controller's DMA engine moves it
 * between its media and the bus: a Read's DMA writes straight from the namespace's pages to host memory, a Write's
 * DMA reads host memory straight into them. A Write first asks the bus for every page of its data pointer
 * ({@link Prp#probe}), so a page the IOMMU or the fabric refuses is a Data Transfer Error with the namespace as it
 * was. One per command engine, which runs it without the controller's lock; its {@link Prp} is reused from command
 * to command.
 */
final class IoCommands {
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** The broadcast namespace ID, which Flush accepts. */
    private static final int NSID_ALL = 0xffff_ffff;

    private final Controller ctrl;
    private final ControllerRegisters regs;
    private final Prp prp;
    private final Direct direct = new Direct();

    IoCommands(Controller ctrl) {
        this.ctrl = ctrl;
        this.regs = ctrl.regs;
        this.prp = new Prp(ctrl.bus);
    }

    /** The DMA between the namespace's pages and the command's PRPs, piece by piece, stopping at a fault. */
    private final class Direct implements PageCopy {
        private boolean toHost;
        /** The refusal that stopped the transfer, or null. */
        private DmaStatus fault;

        Direct start(boolean toHost) {
            this.toHost = toHost;
            this.fault = null;
            return this;
        }

        @Override
        public boolean copy(MemorySegment page, long at) {
            DmaStatus st = prp.move(at, page, toHost);
            if (st.ok()) {
                return true;
            }
            fault = st;
            return false;
        }
    }

    Result execute(NvmeCommand c) {
        if (c.flags() != 0) {
            return Result.of(NvmeStatus.INVALID_FIELD); // no fused operations, no SGLs
        }
        return switch (c.opcode()) {
            case NVM_READ, NVM_WRITE, NVM_WRITE_ZEROES, NVM_DSM, NVM_FLUSH -> namespaced(c);
            default -> Result.of(NvmeStatus.INVALID_OPCODE);
        };
    }

    private Result namespaced(NvmeCommand c) {
        if (c.opcode() == NVM_FLUSH && c.nsid() == NSID_ALL) {
            ctrl.media.flush();
            return Result.OK;
        }
        if (c.nsid() <= 0 || c.nsid() > ctrl.cfg.namespaces()) {
            return Result.of(NvmeStatus.INVALID_NAMESPACE);
        }
        return Result.of(switch (c.opcode()) {
            case NVM_READ -> read(c);
            case NVM_WRITE -> write(c);
            case NVM_WRITE_ZEROES -> writeZeroes(c);
            case NVM_DSM -> datasetManagement(c);
            default -> flush();
        });
    }

    private int flush() {
        ctrl.media.flush();
        return NvmeStatus.SUCCESS;
    }

    /** Whether {@code blocks} from {@code slba} lie inside the namespace. */
    private boolean inside(long slba, long blocks) {
        long nsze = ctrl.cfg.namespaceSize() >>> ctrl.cfg.lbaShift();
        return Long.compareUnsigned(slba, nsze) < 0 && blocks <= nsze - slba;
    }

    /** The status of a Read or Write's LBA range and length (MDTS), or success. */
    private int checkTransfer(NvmeCommand c) {
        if (!inside(c.slba(), c.blocks())) {
            return NvmeStatus.LBA_OUT_OF_RANGE;
        }
        if (((long) c.blocks() << ctrl.cfg.lbaShift()) > ctrl.cfg.maxTransfer()) {
            return NvmeStatus.INVALID_FIELD;
        }
        return NvmeStatus.SUCCESS;
    }

    private int read(NvmeCommand c) {
        int bad = checkTransfer(c);
        if (bad != NvmeStatus.SUCCESS) {
            return bad;
        }
        long bytes = (long) c.blocks() << ctrl.cfg.lbaShift();
        int st = prp.walk(c.prp1(), c.prp2(), bytes, regs.pageSize());
        if (st != NvmeStatus.SUCCESS) {
            return st;
        }
        long offset = c.slba() << ctrl.cfg.lbaShift();
        long n = ctrl.media.read(c.nsid(), offset, bytes, direct.start(true));
        if (direct.fault != null) {
            return ctrl.transferred(direct.fault, c);
        }
        if (n != bytes) {
            throw new ErrnoException(Errno.EIO, "short read of namespace " + c.nsid() + " at " + offset + ": " + n
                    + " of " + bytes + " bytes");
        }
        ctrl.health.read(bytes);
        return NvmeStatus.SUCCESS;
    }

    private int write(NvmeCommand c) {
        int bad = checkTransfer(c);
        if (bad != NvmeStatus.SUCCESS) {
            return bad;
        }
        long bytes = (long) c.blocks() << ctrl.cfg.lbaShift();
        int st = prp.walk(c.prp1(), c.prp2(), bytes, regs.pageSize());
        if (st != NvmeStatus.SUCCESS) {
            return st;
        }
        DmaStatus reachable = prp.probe(false);
        if (!reachable.ok()) {
            return ctrl.transferred(reachable, c); // nothing reached the namespace
        }
        long offset = c.slba() << ctrl.cfg.lbaShift();
        long n = ctrl.media.write(c.nsid(), offset, bytes, direct.start(false));
        if (direct.fault != null) {
            // a mapping removed between the probe and the copy: the bytes before it are in the namespace, as
            // with a real controller whose DMA was in flight when the host unmapped
            return ctrl.transferred(direct.fault, c);
        }
        if (n != bytes) {
            throw new ErrnoException(Errno.ENOSPC, "short write of namespace " + c.nsid() + " at " + offset + ": " + n
                    + " of " + bytes + " bytes");
        }
        ctrl.health.written(bytes);
        return NvmeStatus.SUCCESS;
    }

    /** Write Zeroes (NVM 3.2.8): no data transfer, so no MDTS; the blocks read back as zeroes. */
    private int writeZeroes(NvmeCommand c) {
        if (!inside(c.slba(), c.blocks())) {
            return NvmeStatus.LBA_OUT_OF_RANGE;
        }
        ctrl.media.zero(c.nsid(), c.slba() << ctrl.cfg.lbaShift(), (long) c.blocks() << ctrl.cfg.lbaShift());
        return NvmeStatus.SUCCESS;
    }

    /**
     * Dataset Management (NVM 3.2.3): the ranges come from the host; with the Deallocate attribute each range is
     * released and reads back as zeroes (Identify Namespace DLFEAT 1). Every range is checked before any is freed.
     */
    private int datasetManagement(NvmeCommand c) {
        int ranges = (c.cdw10() & 0xff) + 1;
        MemorySegment list = MemorySegment.ofArray(new byte[ranges * DSM_RANGE_SIZE]);
        int st = ctrl.fromHost(prp, c, list);
        if (st != NvmeStatus.SUCCESS) {
            return st;
        }
        for (int i = 0; i < ranges; i++) {
            long blocks = Integer.toUnsignedLong(list.get(U32, i * DSM_RANGE_SIZE + 4L));
            if (!inside(list.get(U64, i * DSM_RANGE_SIZE + 8L), blocks)) {
                return NvmeStatus.LBA_OUT_OF_RANGE;
            }
        }
        if ((c.cdw11() & DSM_AD) != 0) {
            for (int i = 0; i < ranges; i++) {
                long blocks = Integer.toUnsignedLong(list.get(U32, i * DSM_RANGE_SIZE + 4L));
                if (blocks > 0) {
                    ctrl.media.zero(c.nsid(), list.get(U64, i * DSM_RANGE_SIZE + 8L) << ctrl.cfg.lbaShift(),
                            blocks << ctrl.cfg.lbaShift());
                }
            }
        }
        return NvmeStatus.SUCCESS;
    }
}
