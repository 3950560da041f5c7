package dev.dmaplane.vfio.nvme;

import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * A 16-byte completion queue entry (NVM Express Base Specification 2.0, 4.2.1; {@code struct nvme_completion}).
 *
 * @param dw0    command specific
 * @param dw1    command specific
 * @param sqHead the submission queue head pointer when the entry was posted
 * @param sqId   the submission queue the command came from
 * @param cid    the command's identifier
 * @param phase  the phase tag: it inverts each time the controller wraps the queue, so a new entry is told apart
 * @param status the status field without the phase tag: {@link NvmeStatus} code (SCT and SC), CRD, More, DNR
 */
public record NvmeCompletion(int dw0, int dw1, int sqHead, int sqId, int cid, boolean phase, int status) {
    /** Bytes in a completion queue entry. */
    public static final int SIZE = 16;
    public static final int OFF_DW0 = 0;
    public static final int OFF_DW1 = 4;
    public static final int OFF_SQHD = 8;
    public static final int OFF_SQID = 10;
    public static final int OFF_CID = 12;
    /** Bit 0 the phase tag, bits 15:1 the status field. */
    public static final int OFF_STATUS = 14;

    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** The entry at the start of {@code cqe}. */
    public static NvmeCompletion readFrom(MemorySegment cqe) {
        ErrnoException.requireNonNull(cqe, "NvmeCompletion.readFrom: completion queue entry");
        int sf = Short.toUnsignedInt(cqe.get(U16, OFF_STATUS));
        return new NvmeCompletion(cqe.get(U32, OFF_DW0), cqe.get(U32, OFF_DW1),
                Short.toUnsignedInt(cqe.get(U16, OFF_SQHD)), Short.toUnsignedInt(cqe.get(U16, OFF_SQID)),
                Short.toUnsignedInt(cqe.get(U16, OFF_CID)), (sf & 1) != 0, sf >>> 1);
    }

    /** The phase tag of the entry at the start of {@code cqe}, read alone as a polling driver does. */
    public static boolean phaseOf(MemorySegment cqe) {
        ErrnoException.requireNonNull(cqe, "NvmeCompletion.phaseOf: completion queue entry");
        return (cqe.get(U16, OFF_STATUS) & 1) != 0;
    }

    /** Writes the entry at the start of {@code cqe}. */
    public void writeTo(MemorySegment cqe) {
        cqe.set(U32, OFF_DW0, dw0);
        cqe.set(U32, OFF_DW1, dw1);
        cqe.set(U16, OFF_SQHD, (short) sqHead);
        cqe.set(U16, OFF_SQID, (short) sqId);
        cqe.set(U16, OFF_CID, (short) cid);
        cqe.set(U16, OFF_STATUS, (short) (status << 1 | (phase ? 1 : 0)));
    }

    /** Status Code Type and Status Code (bits 10:0 of the status field): a {@link NvmeStatus} constant. */
    public int code() {
        return status & NvmeStatus.CODE_MASK;
    }

    /** Do Not Retry: the same command would fail again. */
    public boolean dnr() {
        return (status & NvmeStatus.DNR) != 0;
    }

    /** Whether the command succeeded. */
    public boolean ok() {
        return code() == NvmeStatus.SUCCESS;
    }
}
