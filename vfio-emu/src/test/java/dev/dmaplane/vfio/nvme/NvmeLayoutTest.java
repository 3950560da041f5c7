package dev.dmaplane.vfio.nvme;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The byte layouts a driver shares with the controller, as {@code include/linux/nvme.h} declares them: the
 * 64-byte submission entry ({@code struct nvme_common_command}, Base 2.0 figure 88), the 16-byte completion entry
 * with the phase tag in bit 0 of its last word ({@code struct nvme_completion}, figure 90), and the doorbell
 * offsets with CAP.DSTRD (3.1.4.21).
 */
class NvmeLayoutTest {
    @Test
    void aSubmissionEntryIsLittleEndianAtTheSpecsOffsets() {
        NvmeCommand c = NvmeCommand.readWrite(NvmeCommand.NVM_WRITE, 0xbeef, 1, 0x1_2345_6789L, 8, 0x1000, 0x2000);
        MemorySegment e = MemorySegment.ofArray(new byte[NvmeCommand.SIZE]);
        c.writeTo(e);
        byte[] b = e.toArray(ValueLayout.JAVA_BYTE);
        assertEquals(List.of(0x01, 0x00, 0xef, 0xbe, 0x01), List.of(b[0] & 0xff, b[1] & 0xff, b[2] & 0xff, b[3] & 0xff,
                b[4] & 0xff), "opcode, flags, cid (LE), nsid");
        assertEquals(0x10, b[NvmeCommand.OFF_PRP1 + 1]);
        assertEquals(List.of(0x89, 0x67, 0x45, 0x23, 0x01), List.of(b[40] & 0xff, b[41] & 0xff, b[42] & 0xff,
                b[43] & 0xff, b[44] & 0xff), "SLBA in CDW10 and CDW11");
        assertEquals(7, b[48], "NLB is zero-based");
        assertEquals(c, NvmeCommand.readFrom(e));
        assertEquals(0x1_2345_6789L, c.slba());
        assertEquals(8, c.blocks());
    }

    @Test
    void aCompletionCarriesThePhaseTagInBitZeroOfItsStatusWord() {
        NvmeCompletion c = new NvmeCompletion(7, 0, 3, 1, 0x42, true, NvmeStatus.LBA_OUT_OF_RANGE | NvmeStatus.DNR);
        MemorySegment e = MemorySegment.ofArray(new byte[NvmeCompletion.SIZE]);
        c.writeTo(e);
        assertEquals((short) ((NvmeStatus.LBA_OUT_OF_RANGE | NvmeStatus.DNR) << 1 | 1),
                e.get(ValueLayout.JAVA_SHORT_UNALIGNED, NvmeCompletion.OFF_STATUS));
        assertTrue(NvmeCompletion.phaseOf(e));
        NvmeCompletion back = NvmeCompletion.readFrom(e);
        assertEquals(c, back);
        assertEquals(NvmeStatus.LBA_OUT_OF_RANGE, back.code());
        assertTrue(back.dnr());
        assertFalse(back.ok());
    }

    @Test
    void doorbellsFollowTheStride() {
        assertEquals(List.of(0x1000L, 0x1004L, 0x1008L), List.of(NvmeRegs.sqTailDoorbell(0, 0),
                NvmeRegs.cqHeadDoorbell(0, 0), NvmeRegs.sqTailDoorbell(1, 0)));
        assertEquals(0x1000L + 3 * 16, NvmeRegs.cqHeadDoorbell(1, 2));
        assertEquals(0x001f_001f, NvmeRegs.aqa(32, 32));
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> NvmeCommand.of(0x100, 0, 0, 0, 0, 0, 0, 0)).errno(), "an opcode is a byte");
    }
}
