package dev.dmaplane.vfio.nvme;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * A 64-byte submission queue entry (NVM Express Base Specification 2.0, 4.2; {@code struct nvme_common_command}),
 * with PRP data pointers and no metadata pointer. Opcodes and the field layouts of the commands the controller
 * runs are constants here; {@code flags} is byte 1 (FUSE in bits 1:0, PSDT in bits 7:6), zero for a plain command
 * with PRPs.
 *
 * @param opcode command opcode (byte 0)
 * @param flags  FUSE and PSDT (byte 1)
 * @param cid    command identifier, unique among the commands outstanding on its submission queue
 * @param nsid   namespace identifier
 * @param prp1   PRP entry 1
 * @param prp2   PRP entry 2, or a PRP list pointer
 */
public record NvmeCommand(int opcode, int flags, int cid, int nsid, long prp1, long prp2,
                          int cdw10, int cdw11, int cdw12, int cdw13, int cdw14, int cdw15) {
    /** Bytes in a submission queue entry. */
    public static final int SIZE = 64;
    public static final int OFF_OPCODE = 0;
    public static final int OFF_FLAGS = 1;
    public static final int OFF_CID = 2;
    public static final int OFF_NSID = 4;
    public static final int OFF_MPTR = 16;
    public static final int OFF_PRP1 = 24;
    public static final int OFF_PRP2 = 32;
    public static final int OFF_CDW10 = 40;

    /** Admin command set opcodes (Base 2.0, 5). */
    public static final int ADMIN_DELETE_SQ = 0x00;
    public static final int ADMIN_CREATE_SQ = 0x01;
    public static final int ADMIN_GET_LOG_PAGE = 0x02;
    public static final int ADMIN_DELETE_CQ = 0x04;
    public static final int ADMIN_CREATE_CQ = 0x05;
    public static final int ADMIN_IDENTIFY = 0x06;
    public static final int ADMIN_ABORT = 0x08;
    public static final int ADMIN_SET_FEATURES = 0x09;
    public static final int ADMIN_GET_FEATURES = 0x0a;
    public static final int ADMIN_ASYNC_EVENT = 0x0c;

    /** NVM command set opcodes (NVM Command Set Specification 1.0, 3). */
    public static final int NVM_FLUSH = 0x00;
    public static final int NVM_WRITE = 0x01;
    public static final int NVM_READ = 0x02;
    public static final int NVM_WRITE_ZEROES = 0x08;
    public static final int NVM_DSM = 0x09;

    /** Create I/O CQ CDW11: physically contiguous (bit 0), interrupts enabled (bit 1), vector in bits 31:16. */
    public static final int CQ_PC = 1;
    public static final int CQ_IEN = 2;
    /** Create I/O SQ CDW11: physically contiguous (bit 0), completion queue in bits 31:16. */
    public static final int SQ_PC = 1;

    /** Dataset Management CDW11 attribute: deallocate (bit 2). */
    public static final int DSM_AD = 1 << 2;
    /** Bytes in one Dataset Management range: context attributes, length in LBAs, starting LBA. */
    public static final int DSM_RANGE_SIZE = 16;

    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    public NvmeCommand {
        if ((opcode & ~0xff) != 0 || (flags & ~0xff) != 0 || (cid & ~0xffff) != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("NVMe command opcode %#x, flags %#x, cid %#x: opcode"
                    + " and flags are bytes, cid is 16 bits", opcode, flags, cid));
        }
    }

    /** A command with PRPs and {@code cdw10..cdw12}, the other dwords zero. */
    public static NvmeCommand of(int opcode, int cid, int nsid, long prp1, long prp2, int cdw10, int cdw11, int cdw12) {
        return new NvmeCommand(opcode, 0, cid, nsid, prp1, prp2, cdw10, cdw11, cdw12, 0, 0, 0);
    }

    /** Read or Write of {@code blocks} logical blocks from {@code slba} (NLB is zero-based in CDW12). */
    public static NvmeCommand readWrite(int opcode, int cid, int nsid, long slba, int blocks, long prp1, long prp2) {
        return of(opcode, cid, nsid, prp1, prp2, (int) slba, (int) (slba >>> 32), (blocks - 1) & 0xffff);
    }

    /** Create I/O Completion Queue {@code qid} of {@code entries} entries at {@code base}, contiguous. */
    public static NvmeCommand createCq(int cid, int qid, int entries, long base, int vector, boolean interrupts) {
        return of(ADMIN_CREATE_CQ, cid, 0, base, 0, (entries - 1) << 16 | qid,
                vector << 16 | (interrupts ? CQ_IEN : 0) | CQ_PC, 0);
    }

    /** Create I/O Submission Queue {@code qid} of {@code entries} entries at {@code base} on completion queue {@code cqid}. */
    public static NvmeCommand createSq(int cid, int qid, int entries, long base, int cqid) {
        return of(ADMIN_CREATE_SQ, cid, 0, base, 0, (entries - 1) << 16 | qid, cqid << 16 | SQ_PC, 0);
    }

    /** The same command with another identifier. */
    public NvmeCommand withCid(int newCid) {
        return new NvmeCommand(opcode, flags, newCid, nsid, prp1, prp2, cdw10, cdw11, cdw12, cdw13, cdw14, cdw15);
    }

    /** Writes the entry at the start of {@code sqe} (at least {@link #SIZE} bytes), reserved fields zero. */
    public void writeTo(MemorySegment sqe) {
        MemorySegment e = sqe.asSlice(0, SIZE);
        e.fill((byte) 0);
        e.set(ValueLayout.JAVA_BYTE, OFF_OPCODE, (byte) opcode);
        e.set(ValueLayout.JAVA_BYTE, OFF_FLAGS, (byte) flags);
        e.set(U16, OFF_CID, (short) cid);
        e.set(U32, OFF_NSID, nsid);
        e.set(U64, OFF_PRP1, prp1);
        e.set(U64, OFF_PRP2, prp2);
        e.set(U32, OFF_CDW10, cdw10);
        e.set(U32, OFF_CDW10 + 4, cdw11);
        e.set(U32, OFF_CDW10 + 8, cdw12);
        e.set(U32, OFF_CDW10 + 12, cdw13);
        e.set(U32, OFF_CDW10 + 16, cdw14);
        e.set(U32, OFF_CDW10 + 20, cdw15);
    }

    /** Reads the entry at the start of {@code sqe}. */
    public static NvmeCommand readFrom(MemorySegment sqe) {
        ErrnoException.requireNonNull(sqe, "NvmeCommand.readFrom: submission queue entry");
        return new NvmeCommand(Byte.toUnsignedInt(sqe.get(ValueLayout.JAVA_BYTE, OFF_OPCODE)),
                Byte.toUnsignedInt(sqe.get(ValueLayout.JAVA_BYTE, OFF_FLAGS)),
                Short.toUnsignedInt(sqe.get(U16, OFF_CID)), sqe.get(U32, OFF_NSID),
                sqe.get(U64, OFF_PRP1), sqe.get(U64, OFF_PRP2),
                sqe.get(U32, OFF_CDW10), sqe.get(U32, OFF_CDW10 + 4), sqe.get(U32, OFF_CDW10 + 8),
                sqe.get(U32, OFF_CDW10 + 12), sqe.get(U32, OFF_CDW10 + 16), sqe.get(U32, OFF_CDW10 + 20));
    }

    /** The starting LBA of a Read, Write or Write Zeroes (CDW11:CDW10). */
    public long slba() {
        return Integer.toUnsignedLong(cdw10) | (long) cdw11 << 32;
    }

    /** The number of logical blocks of a Read, Write or Write Zeroes (CDW12 bits 15:0, zero-based, plus one). */
    public int blocks() {
        return (cdw12 & 0xffff) + 1;
    }
}
