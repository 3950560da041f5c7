package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeStatus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static dev.dmaplane.vfio.nvme.NvmeCommand.*;

/**
 * The NVM command set on I/O queues (NVM Command Set Specification 1.0, 3; QEMU's {@code nvme_io_cmd}): Read,
 * Write, Flush, Write Zeroes and Dataset Management. A Write moves every byte from the host before it changes the
 * namespace, so a Data Transfer Error leaves the namespace as it was. One per command engine, which runs it without
 * the controller's lock: its staging buffer is reused from command to command, grown to the largest transfer seen.
 */
final class IoCommands {
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** The broadcast namespace ID, which Flush accepts. */
    private static final int NSID_ALL = 0xffff_ffff;

    private final Controller ctrl;
    private MemorySegment staging = MemorySegment.ofArray(new byte[0]);

    IoCommands(Controller ctrl) {
        this.ctrl = ctrl;
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
        MemorySegment data = staging((long) c.blocks() << ctrl.cfg.lbaShift());
        ctrl.media.read(c.nsid(), c.slba() << ctrl.cfg.lbaShift(), data);
        int st = ctrl.toHost(c, data);
        if (st == NvmeStatus.SUCCESS) {
            ctrl.health.read(data.byteSize());
        }
        return st;
    }

    private int write(NvmeCommand c) {
        int bad = checkTransfer(c);
        if (bad != NvmeStatus.SUCCESS) {
            return bad;
        }
        MemorySegment data = staging((long) c.blocks() << ctrl.cfg.lbaShift());
        int st = ctrl.fromHost(c, data);
        if (st != NvmeStatus.SUCCESS) {
            return st; // nothing reached the namespace
        }
        ctrl.media.write(c.nsid(), c.slba() << ctrl.cfg.lbaShift(), data);
        ctrl.health.written(data.byteSize());
        return NvmeStatus.SUCCESS;
    }

    /** The first {@code bytes} of the staging buffer, grown when a transfer needs more. */
    private MemorySegment staging(long bytes) {
        if (staging.byteSize() < bytes) {
            staging = MemorySegment.ofArray(new byte[Math.toIntExact(bytes)]);
        }
        return staging.asSlice(0, bytes);
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
        int st = ctrl.fromHost(c, list);
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
