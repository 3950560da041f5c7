package dev.dmaplane.driver.crc.model;

/** The CRC32C engine's datasheet: 64-bit BAR0 registers and the 32-byte commands of its ring in host memory. */
public final class CrcRegs {
    private CrcRegs() {
    }

    public static final int REG_ID = 0x00;
    /** {@link #CTRL_ENABLE}; {@link #CTRL_RESET} clears the halt and the head; reads {@link #CTRL_HALTED} too. */
    public static final int REG_CTRL = 0x08;
    /** Ring bus address and size (a power of two 2..4096), both taken only while disabled. */
    public static final int REG_RING_BASE = 0x10;
    public static final int REG_RING_SIZE = 0x18;
    /** Free-running index of the next command to fetch. */
    public static final int REG_HEAD = 0x20;
    /** Write-only: free-running index one past the last command filled; the engine runs the commands up to it. */
    public static final int REG_DOORBELL = 0x28;

    public static final long ID_VALUE = 0x1da0_c32cL;
    public static final long CTRL_ENABLE = 1;
    public static final long CTRL_RESET = 2;
    /** A command fetch or write-back faulted, or the doorbell ran past a full ring: stopped until reset. */
    public static final long CTRL_HALTED = 4;

    /** A command: u64 source bus address, u32 length, u32 flags; written back: u32 status after u32 result. */
    public static final int CMD_SIZE = 32;
    public static final int CMD_SRC = 0;
    public static final int CMD_LEN = 8;
    public static final int CMD_FLAGS = 12;
    public static final int CMD_STATUS = 16;
    public static final int CMD_RESULT = 20;
    public static final int FLAG_INTERRUPT = 1;
    public static final int IRQ_VECTOR = 0;
    public static final int MAX_LENGTH = 16 << 20;

    public static final int ST_PENDING = 0;
    public static final int ST_OK = 1;
    /** Reading the source faulted (unmapped, refused by the IOMMU, the engine's own BAR). */
    public static final int ST_READ_FAULT = 2;
    /** Length 0 or above {@link #MAX_LENGTH}, a source wrapping the address space, or unknown flags. */
    public static final int ST_BAD_COMMAND = 3;
}
