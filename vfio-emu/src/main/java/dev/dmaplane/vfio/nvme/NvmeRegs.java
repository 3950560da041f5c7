package dev.dmaplane.vfio.nvme;

/**
 * The controller registers in BAR0 (NVM Express Base Specification 2.0, 3.1.4; {@code include/linux/nvme.h}'s
 * {@code NVME_REG_*}, {@code NVME_CAP_*}, {@code NVME_CC_*}, {@code NVME_CSTS_*}): offsets, widths and fields.
 */
public final class NvmeRegs {
    private NvmeRegs() {
    }

    /** Controller Capabilities, 64-bit, read-only. */
    public static final int CAP = 0x00;
    /** Version, 32-bit: {@link #VS_2_0}. */
    public static final int VS = 0x08;
    /** Interrupt Mask Set, 32-bit (pin-based and MSI interrupts only). */
    public static final int INTMS = 0x0c;
    /** Interrupt Mask Clear, 32-bit. */
    public static final int INTMC = 0x10;
    /** Controller Configuration, 32-bit. */
    public static final int CC = 0x14;
    /** Controller Status, 32-bit, read-only. */
    public static final int CSTS = 0x1c;
    /** Admin Queue Attributes, 32-bit: zero-based sizes of the admin SQ (bits 11:0) and CQ (bits 27:16). */
    public static final int AQA = 0x24;
    /** Admin Submission Queue Base Address, 64-bit, 4 KiB aligned. */
    public static final int ASQ = 0x28;
    /** Admin Completion Queue Base Address, 64-bit, 4 KiB aligned. */
    public static final int ACQ = 0x30;
    /** Controller Memory Buffer Location, 32-bit. */
    public static final int CMBLOC = 0x38;
    /** Controller Memory Buffer Size, 32-bit. */
    public static final int CMBSZ = 0x3c;
    /** Controller Memory Buffer Memory Space Control, 64-bit: {@link #CMBMSC_CRE}, {@link #CMBMSC_CMSE}, base in 63:12. */
    public static final int CMBMSC = 0x50;
    /** The first doorbell: the admin SQ's tail. */
    public static final int DOORBELLS = 0x1000;

    /** VS for NVMe 2.0: major 2 in bits 31:16, minor 0 in 15:8. */
    public static final int VS_2_0 = 0x0002_0000;

    /** CAP.MQES: maximum queue entries supported, zero-based (bits 15:0). */
    public static int capMqes(long cap) {
        return (int) (cap & 0xffff);
    }

    /** CAP.CQR: contiguous queues required (bit 16). */
    public static boolean capCqr(long cap) {
        return (cap >>> 16 & 1) != 0;
    }

    /** CAP.TO: worst-case time for CSTS.RDY to follow CC.EN, in 500 ms units (bits 31:24). */
    public static int capTimeout(long cap) {
        return (int) (cap >>> 24 & 0xff);
    }

    /** CAP.DSTRD: doorbell stride, the doorbells are {@code 4 << DSTRD} bytes apart (bits 35:32). */
    public static int capDstrd(long cap) {
        return (int) (cap >>> 32 & 0xf);
    }

    /** CAP.CSS: command sets supported (bits 44:37); bit 0 of the field is the NVM command set. */
    public static int capCss(long cap) {
        return (int) (cap >>> 37 & 0xff);
    }

    /** CAP.MPSMIN: the smallest memory page size is {@code 4096 << MPSMIN} (bits 51:48). */
    public static int capMpsMin(long cap) {
        return (int) (cap >>> 48 & 0xf);
    }

    /** CAP.MPSMAX: the largest memory page size is {@code 4096 << MPSMAX} (bits 55:52). */
    public static int capMpsMax(long cap) {
        return (int) (cap >>> 52 & 0xf);
    }

    /** CAP.CMBS: the controller memory buffer is supported (bit 57). */
    public static boolean capCmbs(long cap) {
        return (cap >>> 57 & 1) != 0;
    }

    /** CMBMSC.CRE: CMBLOC and CMBSZ report the buffer (they read 0 until it is set). */
    public static final long CMBMSC_CRE = 1;
    /** CMBMSC.CMSE: addresses from CMBMSC's base on are the controller memory buffer. */
    public static final long CMBMSC_CMSE = 2;
    /** CMBLOC.BIR (bits 2:0): the BAR holding the buffer; OFST (bits 31:12) its offset in size units. */
    public static final int CMBLOC_BIR_MASK = 7;
    /** CMBSZ support bits: submission queues, completion queues, PRP lists, read data, write data. */
    public static final int CMBSZ_SQS = 1;
    public static final int CMBSZ_CQS = 2;
    public static final int CMBSZ_LISTS = 4;
    public static final int CMBSZ_RDS = 8;
    public static final int CMBSZ_WDS = 16;
    /** CMBSZ.SZU (bits 11:8): size unit {@code 4 KiB << (4 * SZU)}; CMBSZ.SZ (bits 31:12): size in those units. */
    public static final int CMBSZ_SZU_SHIFT = 8;
    public static final int CMBSZ_SZ_SHIFT = 12;

    /** Bytes of the controller memory buffer CMBSZ describes. */
    public static long cmbBytes(int cmbsz) {
        return Integer.toUnsignedLong(cmbsz >>> CMBSZ_SZ_SHIFT) * (4096L << 4 * (cmbsz >>> CMBSZ_SZU_SHIFT & 0xf));
    }

    /** CAP.CSS bit for the NVM command set. */
    public static final int CSS_NVM = 1;

    /** CC.EN: enable (bit 0). */
    public static final int CC_EN = 1;
    /** CC.CSS (bits 6:4): I/O command set selected; 0 is the NVM command set. */
    public static final int CC_CSS_SHIFT = 4;
    /** CC.MPS (bits 10:7): memory page size {@code 4096 << MPS}. */
    public static final int CC_MPS_SHIFT = 7;
    /** CC.AMS (bits 13:11): arbitration mechanism; 0 is round robin. */
    public static final int CC_AMS_SHIFT = 11;
    /** CC.SHN (bits 15:14): shutdown notification. */
    public static final int CC_SHN_SHIFT = 14;
    public static final int CC_SHN_NONE = 0;
    public static final int CC_SHN_NORMAL = 1;
    public static final int CC_SHN_ABRUPT = 2;
    /** CC.IOSQES (bits 19:16): I/O SQ entry size {@code 2^n}; 6 for 64 bytes. */
    public static final int CC_IOSQES_SHIFT = 16;
    /** CC.IOCQES (bits 23:20): I/O CQ entry size {@code 2^n}; 4 for 16 bytes. */
    public static final int CC_IOCQES_SHIFT = 20;

    /** A CC value enabling the controller with the NVM command set, page size {@code 4096 << mps}, round robin, 64/16-byte entries. */
    public static int ccEnable(int mps) {
        return CC_EN | mps << CC_MPS_SHIFT | 6 << CC_IOSQES_SHIFT | 4 << CC_IOCQES_SHIFT;
    }

    /** CSTS.RDY: ready (bit 0). */
    public static final int CSTS_RDY = 1;
    /** CSTS.CFS: controller fatal status (bit 1). */
    public static final int CSTS_CFS = 2;
    /** CSTS.SHST (bits 3:2): shutdown status. */
    public static final int CSTS_SHST_SHIFT = 2;
    public static final int CSTS_SHST_MASK = 3 << CSTS_SHST_SHIFT;
    public static final int CSTS_SHST_NORMAL = 0;
    public static final int CSTS_SHST_OCCURRING = 1;
    public static final int CSTS_SHST_COMPLETE = 2;

    /** An AQA value for an admin SQ of {@code sqEntries} and an admin CQ of {@code cqEntries} entries. */
    public static int aqa(int sqEntries, int cqEntries) {
        return (sqEntries - 1) & 0xfff | ((cqEntries - 1) & 0xfff) << 16;
    }

    /** Offset of queue {@code qid}'s Submission Queue Tail doorbell: {@code 0x1000 + (2 * qid) * (4 << dstrd)}. */
    public static long sqTailDoorbell(int qid, int dstrd) {
        return DOORBELLS + (2L * qid) * (4L << dstrd);
    }

    /** Offset of queue {@code qid}'s Completion Queue Head doorbell: {@code 0x1000 + (2 * qid + 1) * (4 << dstrd)}. */
    public static long cqHeadDoorbell(int qid, int dstrd) {
        return DOORBELLS + (2L * qid + 1) * (4L << dstrd);
    }
}
