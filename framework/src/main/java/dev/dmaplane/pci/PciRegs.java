package dev.dmaplane.pci;

/**
 * Config-space register offsets and bits dmaplane models, named as in {@code include/uapi/linux/pci_regs.h}
 * (without the {@code PCI_} prefix) so driver code reads like its kernel counterpart.
 */
public final class PciRegs {
    private PciRegs() {
    }

    // header common to both types
    public static final int VENDOR_ID = 0x00;
    public static final int DEVICE_ID = 0x02;
    public static final int COMMAND = 0x04;
    public static final int COMMAND_IO = 0x0001;
    public static final int COMMAND_MEMORY = 0x0002;
    public static final int COMMAND_MASTER = 0x0004;
    public static final int COMMAND_PARITY = 0x0040;
    public static final int COMMAND_SERR = 0x0100;
    public static final int COMMAND_INTX_DISABLE = 0x0400;
    public static final int STATUS = 0x06;
    /** Status Interrupt Status: the function's INTx line is asserted ({@code PCI_STATUS_INTERRUPT}). */
    public static final int STATUS_INTERRUPT = 0x0008;
    public static final int STATUS_CAP_LIST = 0x0010;
    /** The write-one-to-clear error bits of the Status register. */
    public static final int STATUS_ERROR_BITS = 0xF900;
    public static final int CLASS_REVISION = 0x08;
    public static final int REVISION_ID = 0x08;
    public static final int CLASS_PROG = 0x09;
    public static final int CACHE_LINE_SIZE = 0x0c;
    public static final int LATENCY_TIMER = 0x0d;
    public static final int HEADER_TYPE = 0x0e;
    public static final int HEADER_TYPE_MASK = 0x7f;
    public static final int HEADER_TYPE_MFD = 0x80;
    public static final int HEADER_TYPE_NORMAL = 0;
    public static final int HEADER_TYPE_BRIDGE = 1;
    public static final int BASE_ADDRESS_0 = 0x10;
    public static final int BASE_ADDRESS_SPACE_IO = 0x01;
    public static final int BASE_ADDRESS_MEM_TYPE_MASK = 0x06;
    public static final int BASE_ADDRESS_MEM_TYPE_32 = 0x00;
    public static final int BASE_ADDRESS_MEM_TYPE_64 = 0x04;
    public static final int BASE_ADDRESS_MEM_PREFETCH = 0x08;
    public static final int BASE_ADDRESS_MEM_MASK = ~0x0f;
    public static final int CAPABILITY_LIST = 0x34;
    public static final int INTERRUPT_LINE = 0x3c;
    public static final int INTERRUPT_PIN = 0x3d;

    // type 0 (normal) header
    public static final int SUBSYSTEM_VENDOR_ID = 0x2c;
    public static final int SUBSYSTEM_ID = 0x2e;
    public static final int ROM_ADDRESS = 0x30;

    // type 1 (bridge) header
    public static final int PRIMARY_BUS = 0x18;
    public static final int SECONDARY_BUS = 0x19;
    public static final int SUBORDINATE_BUS = 0x1a;
    public static final int SEC_STATUS = 0x1e;
    public static final int MEMORY_BASE = 0x20;
    public static final int MEMORY_LIMIT = 0x22;
    public static final int PREF_MEMORY_BASE = 0x24;
    public static final int PREF_MEMORY_LIMIT = 0x26;
    public static final int PREF_RANGE_TYPE_64 = 0x01;
    public static final int PREF_BASE_UPPER32 = 0x28;
    public static final int PREF_LIMIT_UPPER32 = 0x2c;
    public static final int ROM_ADDRESS1 = 0x38;
    public static final int BRIDGE_CONTROL = 0x3e;
    /** Bridge Control: Secondary Bus Reset ({@code PCI_BRIDGE_CTL_BUS_RESET}). */
    public static final int BRIDGE_CTL_BUS_RESET = 0x40;

    // capability list
    public static final int CAP_LIST_ID = 0;
    public static final int CAP_LIST_NEXT = 1;
    public static final int CAP_ID_PM = 0x01;
    public static final int CAP_ID_MSI = 0x05;
    public static final int CAP_ID_EXP = 0x10;
    public static final int CAP_ID_MSIX = 0x11;

    // Power Management capability
    public static final int PM_PMC = 2;
    public static final int PM_CTRL = 4;
    public static final int PM_CTRL_STATE_MASK = 0x0003;
    public static final int PM_CTRL_NO_SOFT_RESET = 0x0008;
    public static final int PM_SIZEOF = 8;

    // PCI Express capability
    public static final int EXP_FLAGS = 2;
    public static final int EXP_FLAGS_VERS = 0x000f;
    public static final int EXP_FLAGS_TYPE = 0x00f0;
    public static final int EXP_FLAGS_SLOT = 0x0100;
    public static final int EXP_DEVCAP = 4;
    public static final int EXP_DEVCTL = 8;
    /** Device Capabilities: Function Level Reset capable ({@code PCI_EXP_DEVCAP_FLR}). */
    public static final int EXP_DEVCAP_FLR = 0x1000_0000;
    /** Device Control: Initiate Function Level Reset, reads as zero ({@code PCI_EXP_DEVCTL_BCR_FLR}). */
    public static final int EXP_DEVCTL_BCR_FLR = 0x8000;
    /** Device Control: Enable Relaxed Ordering ({@code PCI_EXP_DEVCTL_RELAX_EN}). */
    public static final int EXP_DEVCTL_RELAX_EN = 0x0010;
    /** Device Control: Enable No Snoop ({@code PCI_EXP_DEVCTL_NOSNOOP_EN}). */
    public static final int EXP_DEVCTL_NOSNOOP_EN = 0x0800;
    /** Device Control: Max_Read_Request_Size, 128 bytes shifted left by its value ({@code PCI_EXP_DEVCTL_READRQ}). */
    public static final int EXP_DEVCTL_READRQ = 0x7000;
    /** Device Control: Max_Read_Request_Size of 512 bytes ({@code PCI_EXP_DEVCTL_READRQ_512B}). */
    public static final int EXP_DEVCTL_READRQ_512B = 0x2000;
    public static final int EXP_DEVSTA = 10;
    public static final int EXP_LNKCAP = 12;
    /** Link Capabilities: Max Link Speed, an index into Supported Link Speeds ({@code PCI_EXP_LNKCAP_SLS}). */
    public static final int EXP_LNKCAP_SLS = 0x0000_000f;
    /** Link Capabilities: Maximum Link Width, in lanes ({@code PCI_EXP_LNKCAP_MLW}). */
    public static final int EXP_LNKCAP_MLW = 0x0000_03f0;
    /** Link Capabilities: Data Link Layer Link Active Reporting Capable ({@code PCI_EXP_LNKCAP_DLLLARC}). */
    public static final int EXP_LNKCAP_DLLLARC = 0x0010_0000;
    /** Link Capabilities: Link Bandwidth Notification Capable ({@code PCI_EXP_LNKCAP_LBNC}). */
    public static final int EXP_LNKCAP_LBNC = 0x0020_0000;
    /** Link Capabilities: Port Number ({@code PCI_EXP_LNKCAP_PN}). */
    public static final int EXP_LNKCAP_PN = 0xff00_0000;
    public static final int EXP_LNKCTL = 16;
    public static final int EXP_LNKSTA = 18;
    /** Link Status: Current Link Speed ({@code PCI_EXP_LNKSTA_CLS}). */
    public static final int EXP_LNKSTA_CLS = 0x000f;
    /** Link Status: Negotiated Link Width ({@code PCI_EXP_LNKSTA_NLW}). */
    public static final int EXP_LNKSTA_NLW = 0x03f0;
    /** Link Status: Data Link Layer Link Active ({@code PCI_EXP_LNKSTA_DLLLA}). */
    public static final int EXP_LNKSTA_DLLLA = 0x2000;
    /** Slot Capabilities ({@code PCI_EXP_SLTCAP}). */
    public static final int EXP_SLTCAP = 20;
    /** Slot Capabilities: Physical Slot Number ({@code PCI_EXP_SLTCAP_PSN}). */
    public static final int EXP_SLTCAP_PSN = 0xfff8_0000;
    /** Link Capabilities 2 ({@code PCI_EXP_LNKCAP2}). */
    public static final int EXP_LNKCAP2 = 0x2c;
    /** Link Capabilities 2: Supported Link Speeds vector, bit 1 for 2.5 GT/s up ({@code PCI_EXP_LNKCAP2_SLS}). */
    public static final int EXP_LNKCAP2_SLS = 0x0000_00fe;
    /** Link Control 2 ({@code PCI_EXP_LNKCTL2}). */
    public static final int EXP_LNKCTL2 = 0x30;
    /** Link Control 2: Target Link Speed ({@code PCI_EXP_LNKCTL2_TLS}). */
    public static final int EXP_LNKCTL2_TLS = 0x000f;
    /** Size of a version 2 PCI Express capability with slot and root registers ({@code PCI_CAP_EXP_SIZEOF}). */
    public static final int EXP_SIZEOF = 0x3c;

    // MSI capability
    public static final int MSI_FLAGS = 2;
    public static final int MSI_FLAGS_ENABLE = 0x0001;
    /** Multiple Message Capable: log2 of the vectors the function implements ({@code PCI_MSI_FLAGS_QMASK}). */
    public static final int MSI_FLAGS_QMASK = 0x000e;
    /** Multiple Message Enable: log2 of the vectors software allotted ({@code PCI_MSI_FLAGS_QSIZE}). */
    public static final int MSI_FLAGS_QSIZE = 0x0070;
    public static final int MSI_FLAGS_64BIT = 0x0080;
    /** Per-vector masking capable ({@code PCI_MSI_FLAGS_MASKBIT}). */
    public static final int MSI_FLAGS_MASKBIT = 0x0100;
    public static final int MSI_ADDRESS_LO = 4;
    public static final int MSI_ADDRESS_LO_MASK = 0xfffffffc;
    public static final int MSI_ADDRESS_HI = 8;
    public static final int MSI_DATA_32 = 8;
    public static final int MSI_MASK_32 = 12;
    public static final int MSI_PENDING_32 = 16;
    public static final int MSI_DATA_64 = 12;
    public static final int MSI_MASK_64 = 16;
    public static final int MSI_PENDING_64 = 20;

    // MSI-X capability
    public static final int MSIX_FLAGS = 2;
    public static final int MSIX_FLAGS_QSIZE = 0x07ff;
    public static final int MSIX_FLAGS_MASKALL = 0x4000;
    public static final int MSIX_FLAGS_ENABLE = 0x8000;
    public static final int MSIX_TABLE = 4;
    public static final int MSIX_PBA = 8;
    public static final int MSIX_BIR_MASK = 0x7;
    public static final int MSIX_SIZEOF = 12;
    /** Bytes per MSI-X table entry ({@code PCI_MSIX_ENTRY_SIZE}). */
    public static final int MSIX_ENTRY_SIZE = 16;
    public static final int MSIX_ENTRY_LOWER_ADDR = 0;
    public static final int MSIX_ENTRY_UPPER_ADDR = 4;
    public static final int MSIX_ENTRY_DATA = 8;
    public static final int MSIX_ENTRY_VECTOR_CTRL = 12;
    /** The Mask bit of an entry's Vector Control ({@code PCI_MSIX_ENTRY_CTRL_MASKBIT}). */
    public static final int MSIX_ENTRY_CTRL_MASKBIT = 0x1;

    // extended capabilities
    public static final int CFG_SPACE_SIZE = 256;
    public static final int CFG_SPACE_EXP_SIZE = 4096;
    public static final int EXT_CAP_ID_ACS = 0x0d;
    public static final int ACS_CAP = 4;
    public static final int ACS_CTRL = 6;
    public static final int ACS_SIZEOF = 8;
    /** Extended capability header: Next Capability Offset ({@code PCI_EXT_CAP_NEXT}), bits 31:20. */
    public static final int EXT_CAP_NEXT_SHIFT = 20;
    /** Extended capability header: Capability Version ({@code PCI_EXT_CAP_VER}), bits 19:16. */
    public static final int EXT_CAP_VER_SHIFT = 16;

    // Advanced Error Reporting extended capability (PCIe Base Spec 7.8.4)
    /** Advanced Error Reporting ({@code PCI_EXT_CAP_ID_ERR}). */
    public static final int EXT_CAP_ID_ERR = 0x01;
    /** Uncorrectable Error Status, RW1CS ({@code PCI_ERR_UNCOR_STATUS}). */
    public static final int ERR_UNCOR_STATUS = 0x04;
    /** Uncorrectable: Data Link Protocol Error ({@code PCI_ERR_UNC_DLP}). */
    public static final int ERR_UNC_DLP = 0x0000_0010;
    /** Uncorrectable: Surprise Down Error ({@code PCI_ERR_UNC_SURPDN}). */
    public static final int ERR_UNC_SURPDN = 0x0000_0020;
    /** Uncorrectable: Poisoned TLP Received ({@code PCI_ERR_UNC_POISON_TLP}). */
    public static final int ERR_UNC_POISON_TLP = 0x0000_1000;
    /** Uncorrectable: Flow Control Protocol Error ({@code PCI_ERR_UNC_FCP}). */
    public static final int ERR_UNC_FCP = 0x0000_2000;
    /** Uncorrectable: Completer Abort ({@code PCI_ERR_UNC_COMP_ABORT}). */
    public static final int ERR_UNC_COMP_ABORT = 0x0000_8000;
    /** Uncorrectable: Receiver Overflow ({@code PCI_ERR_UNC_RX_OVER}). */
    public static final int ERR_UNC_RX_OVER = 0x0002_0000;
    /** Uncorrectable: Malformed TLP ({@code PCI_ERR_UNC_MALF_TLP}). */
    public static final int ERR_UNC_MALF_TLP = 0x0004_0000;
    /** Uncorrectable: Unsupported Request ({@code PCI_ERR_UNC_UNSUP}). */
    public static final int ERR_UNC_UNSUP = 0x0010_0000;
    /** The uncorrectable errors the model implements: DLP, Surprise Down and bits 12 to 21 (through ACS Violation). */
    public static final int ERR_UNC_IMPLEMENTED = 0x003F_F030;
    /** Uncorrectable Error Mask, RWS ({@code PCI_ERR_UNCOR_MASK}). */
    public static final int ERR_UNCOR_MASK = 0x08;
    /** Uncorrectable Error Severity, RWS: set means fatal ({@code PCI_ERR_UNCOR_SEVER}). */
    public static final int ERR_UNCOR_SEVER = 0x0c;
    /** Correctable Error Status, RW1CS ({@code PCI_ERR_COR_STATUS}). */
    public static final int ERR_COR_STATUS = 0x10;
    /** Correctable: Advisory Non-Fatal Error ({@code PCI_ERR_COR_ADV_NFAT}). */
    public static final int ERR_COR_ADV_NFAT = 0x0000_2000;
    /** The correctable errors the model implements: Receiver Error through Advisory Non-Fatal. */
    public static final int ERR_COR_IMPLEMENTED = 0x0000_31C1;
    /** Correctable Error Mask, RWS ({@code PCI_ERR_COR_MASK}). */
    public static final int ERR_COR_MASK = 0x14;
    /** Advanced Error Capabilities and Control ({@code PCI_ERR_CAP}). */
    public static final int ERR_CAP = 0x18;
    /** First Error Pointer: the bit number of the first logged uncorrectable error ({@code PCI_ERR_CAP_FEP}). */
    public static final int ERR_CAP_FEP = 0x1f;
    /** Header Log, four dwords of the TLP header of the first error ({@code PCI_ERR_HEADER_LOG}). */
    public static final int ERR_HEADER_LOG = 0x1c;
    /** Root Error Command, root ports only ({@code PCI_ERR_ROOT_COMMAND}). */
    public static final int ERR_ROOT_COMMAND = 0x2c;
    /** Root Error Command: the reporting enables for ERR_COR, ERR_NONFATAL, ERR_FATAL. */
    public static final int ERR_ROOT_CMD_ENABLES = 0x7;
    /** Root Error Command: Correctable Error Reporting Enable ({@code PCI_ERR_ROOT_CMD_COR_EN}). */
    public static final int ERR_ROOT_CMD_COR_EN = 0x1;
    /** Root Error Command: Non-Fatal Error Reporting Enable ({@code PCI_ERR_ROOT_CMD_NONFATAL_EN}). */
    public static final int ERR_ROOT_CMD_NONFATAL_EN = 0x2;
    /** Root Error Command: Fatal Error Reporting Enable ({@code PCI_ERR_ROOT_CMD_FATAL_EN}). */
    public static final int ERR_ROOT_CMD_FATAL_EN = 0x4;
    /** Root Error Status, RW1CS ({@code PCI_ERR_ROOT_STATUS}). */
    public static final int ERR_ROOT_STATUS = 0x30;
    /** Root Error Status: ERR_COR Received ({@code PCI_ERR_ROOT_COR_RCV}). */
    public static final int ERR_ROOT_COR_RCV = 0x01;
    /** Root Error Status: Multiple ERR_COR Received ({@code PCI_ERR_ROOT_MULTI_COR_RCV}). */
    public static final int ERR_ROOT_MULTI_COR_RCV = 0x02;
    /** Root Error Status: ERR_FATAL/NONFATAL Received ({@code PCI_ERR_ROOT_UNCOR_RCV}). */
    public static final int ERR_ROOT_UNCOR_RCV = 0x04;
    /** Root Error Status: Multiple ERR_FATAL/NONFATAL Received ({@code PCI_ERR_ROOT_MULTI_UNCOR_RCV}). */
    public static final int ERR_ROOT_MULTI_UNCOR_RCV = 0x08;
    /** Root Error Status: First Uncorrectable Fatal ({@code PCI_ERR_ROOT_FIRST_FATAL}). */
    public static final int ERR_ROOT_FIRST_FATAL = 0x10;
    /** Root Error Status: Non-Fatal Error Messages Received ({@code PCI_ERR_ROOT_NONFATAL_RCV}). */
    public static final int ERR_ROOT_NONFATAL_RCV = 0x20;
    /** Root Error Status: Fatal Error Messages Received ({@code PCI_ERR_ROOT_FATAL_RCV}). */
    public static final int ERR_ROOT_FATAL_RCV = 0x40;
    /** Error Source Identification: ERR_COR source in bits 15:0, ERR_FATAL/NONFATAL in 31:16 ({@code PCI_ERR_ROOT_ERR_SRC}). */
    public static final int ERR_ROOT_ERR_SRC = 0x34;
    /** Bytes of the version 2 AER capability up to and with the TLP Prefix Log. */
    public static final int ERR_SIZEOF = 0x48;

    // Device Status error bits (PCIe Base Spec 7.5.3.5), RW1C
    /** Device Status: Correctable Error Detected ({@code PCI_EXP_DEVSTA_CED}). */
    public static final int EXP_DEVSTA_CED = 0x0001;
    /** Device Status: Non-Fatal Error Detected ({@code PCI_EXP_DEVSTA_NFED}). */
    public static final int EXP_DEVSTA_NFED = 0x0002;
    /** Device Status: Fatal Error Detected ({@code PCI_EXP_DEVSTA_FED}). */
    public static final int EXP_DEVSTA_FED = 0x0004;
    /** Device Status: Unsupported Request Detected ({@code PCI_EXP_DEVSTA_URD}). */
    public static final int EXP_DEVSTA_URD = 0x0008;
    /** Device Control: Correctable, Non-Fatal, Fatal and Unsupported Request Reporting Enable ({@code PCI_EXP_DEVCTL_CERE} etc.). */
    public static final int EXP_DEVCTL_CERE = 0x0001;
    public static final int EXP_DEVCTL_NFERE = 0x0002;
    public static final int EXP_DEVCTL_FERE = 0x0004;
    public static final int EXP_DEVCTL_URRE = 0x0008;

    // Status register error bits
    /** Status: Signaled Target Abort, a completer answered with Completer Abort ({@code PCI_STATUS_SIG_TARGET_ABORT}). */
    public static final int STATUS_SIG_TARGET_ABORT = 0x0800;
    /** Status: Received Target Abort, a requester got a Completer Abort completion ({@code PCI_STATUS_REC_TARGET_ABORT}). */
    public static final int STATUS_REC_TARGET_ABORT = 0x1000;
    /** Status: Received Master Abort, a requester got an Unsupported Request completion ({@code PCI_STATUS_REC_MASTER_ABORT}). */
    public static final int STATUS_REC_MASTER_ABORT = 0x2000;
    /** Status: Signaled System Error, the function sent ERR_FATAL/NONFATAL with SERR# enabled ({@code PCI_STATUS_SIG_SYSTEM_ERROR}). */
    public static final int STATUS_SIG_SYSTEM_ERROR = 0x4000;

    // Device Serial Number extended capability (PCIe Base Spec 7.9.3)
    /** Device Serial Number ({@code PCI_EXT_CAP_ID_DSN}). */
    public static final int EXT_CAP_ID_DSN = 0x03;
    /** The serial's lower dword; the upper follows at +8. */
    public static final int DSN_LOWER = 0x04;
    public static final int DSN_UPPER = 0x08;
    public static final int DSN_SIZEOF = 0x0c;

    // Secondary PCI Express extended capability (PCIe Base Spec 7.7.3)
    /** Secondary PCI Express ({@code PCI_EXT_CAP_ID_SECPCI}). */
    public static final int EXT_CAP_ID_SECPCI = 0x19;
    /** Link Control 3 ({@code PCI_EXP_LNKCTL3}). */
    public static final int SECPCI_LNKCTL3 = 0x04;
    /** Lane Error Status, RW1CS, one bit per lane ({@code PCI_EXP_LANE_ERR_STA}). */
    public static final int SECPCI_LANE_ERR = 0x08;
    /** Lane Equalization Control: one 16-bit register per lane of the maximum link width. */
    public static final int SECPCI_LANE_EQ_CTRL = 0x0c;

    // Physical Layer 16.0 GT/s extended capability (PCIe Base Spec 7.7.5)
    /** Physical Layer 16.0 GT/s ({@code PCI_EXT_CAP_ID_PL_16GT}). */
    public static final int EXT_CAP_ID_PL_16GT = 0x26;
    /** 16.0 GT/s Local Data Parity Mismatch Status, RW1CS, one bit per lane. */
    public static final int PL16_LOCAL_PARITY = 0x10;
    /** 16.0 GT/s Lane Equalization Control: one byte per lane of the maximum link width, padded to dwords. */
    public static final int PL16_LANE_EQ_CTRL = 0x20;
}
