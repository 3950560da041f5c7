package dev.dmaplane.vfio.nvme;

/**
 * The data structures of the admin commands as a driver reads them (NVM Express Base Specification 2.0, 5.15
 * Get Log Page, 5.17 Identify, 5.27 Set Features; NVM Command Set Specification 1.0, 4.1.5 Identify Namespace;
 * {@code struct nvme_id_ctrl}, {@code struct nvme_id_ns}, {@code struct nvme_smart_log}, {@code NVME_FEAT_*}).
 */
public final class NvmeAdmin {
    private NvmeAdmin() {
    }

    /** Bytes of every Identify data structure. */
    public static final int IDENTIFY_SIZE = 4096;
    /** Identify CNS values (CDW10 bits 7:0). */
    public static final int CNS_NAMESPACE = 0x00;
    public static final int CNS_CONTROLLER = 0x01;
    public static final int CNS_ACTIVE_NAMESPACES = 0x02;

    /** Identify Controller offsets. */
    public static final int IDC_VID = 0;
    public static final int IDC_SSVID = 2;
    public static final int IDC_SN = 4;
    public static final int IDC_MN = 24;
    public static final int IDC_FR = 64;
    /** Maximum Data Transfer Size: {@code 2^MDTS} minimum memory pages (CAP.MPSMIN); 0 is no limit. */
    public static final int IDC_MDTS = 77;
    public static final int IDC_CNTLID = 78;
    public static final int IDC_VER = 80;
    public static final int IDC_OACS = 256;
    public static final int IDC_ACL = 258;
    /** Asynchronous Event Request Limit, zero-based. */
    public static final int IDC_AERL = 259;
    public static final int IDC_LPA = 261;
    /** Error Log Page Entries, zero-based. */
    public static final int IDC_ELPE = 262;
    /** Submission and Completion Queue Entry Size: required (bits 3:0) and maximum (bits 7:4), as powers of two. */
    public static final int IDC_SQES = 512;
    public static final int IDC_CQES = 513;
    public static final int IDC_MAXCMD = 514;
    /** Number of Namespaces: the largest namespace ID. */
    public static final int IDC_NN = 516;
    /** Optional NVM Command Support: bit 2 Dataset Management, bit 3 Write Zeroes. */
    public static final int IDC_ONCS = 520;
    public static final int IDC_VWC = 525;
    public static final int IDC_SGLS = 536;
    public static final int IDC_SUBNQN = 768;
    public static final int ONCS_DSM = 1 << 2;
    public static final int ONCS_WRITE_ZEROES = 1 << 3;

    /** Identify Namespace offsets. */
    public static final int IDN_NSZE = 0;
    public static final int IDN_NCAP = 8;
    public static final int IDN_NUSE = 16;
    public static final int IDN_NSFEAT = 24;
    public static final int IDN_NLBAF = 25;
    public static final int IDN_FLBAS = 26;
    /** Deallocate Logical Block Features: bits 2:0 = 1, a deallocated block reads as zeroes. */
    public static final int IDN_DLFEAT = 33;
    /** LBA Format 0: metadata size (bits 15:0), LBA data size {@code 2^LBADS} (bits 23:16). */
    public static final int IDN_LBAF0 = 128;

    /** Log page identifiers (Get Log Page CDW10 bits 7:0). */
    public static final int LOG_ERROR = 0x01;
    public static final int LOG_SMART = 0x02;
    /** Bytes of one Error Information log entry and of the SMART / Health Information log. */
    public static final int ERROR_ENTRY_SIZE = 64;
    public static final int SMART_SIZE = 512;
    /** Error Information entry offsets. */
    public static final int ERR_COUNT = 0;
    public static final int ERR_SQID = 8;
    public static final int ERR_CID = 10;
    public static final int ERR_STATUS = 12;
    public static final int ERR_LBA = 16;
    public static final int ERR_NSID = 24;
    /** SMART / Health Information offsets (the 16-byte counters are little-endian 128-bit). */
    public static final int SMART_CRITICAL_WARNING = 0;
    public static final int SMART_TEMPERATURE = 1;
    public static final int SMART_AVAILABLE_SPARE = 3;
    public static final int SMART_DATA_UNITS_READ = 32;
    public static final int SMART_DATA_UNITS_WRITTEN = 48;
    public static final int SMART_HOST_READS = 64;
    public static final int SMART_HOST_WRITES = 80;
    public static final int SMART_POWER_CYCLES = 112;
    public static final int SMART_ERROR_LOG_ENTRIES = 176;

    /** Feature identifiers (Get/Set Features CDW10 bits 7:0). */
    public static final int FEAT_ARBITRATION = 0x01;
    public static final int FEAT_POWER_MGMT = 0x02;
    public static final int FEAT_TEMP_THRESHOLD = 0x04;
    public static final int FEAT_NUM_QUEUES = 0x07;
    public static final int FEAT_IRQ_COALESCING = 0x08;
    public static final int FEAT_IRQ_CONFIG = 0x09;
    public static final int FEAT_ASYNC_EVENT = 0x0b;
    /** Set Features CDW10 bit 31: save the value across resets. */
    public static final int FEAT_SAVE = 1 << 31;
    /** Get Features CDW10 bits 10:8: current, default, saved, supported capabilities. */
    public static final int SEL_CURRENT = 0;
    public static final int SEL_DEFAULT = 1;
    public static final int SEL_SAVED = 2;
    public static final int SEL_CAPABILITIES = 3;

    /** Asynchronous event types (completion DW0 bits 2:0), information (15:8) and log page (23:16). */
    public static final int AE_TYPE_ERROR = 0;
    public static final int AE_INFO_INVALID_DOORBELL = 0x00;
    public static final int AE_INFO_INVALID_DOORBELL_VALUE = 0x01;
}
