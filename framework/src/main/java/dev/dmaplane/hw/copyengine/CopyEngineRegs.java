package dev.dmaplane.hw.copyengine;

/**
 * The copy engine's programming model — its "datasheet": BAR0 register offsets, descriptor layout and status
 * codes. A descriptor ring lives in host memory the driver maps for the device; the driver fills descriptors and
 * writes the ring tail (doorbell); the engine fetches each descriptor by DMA, copies, writes the status back into
 * the descriptor, and advances the head — the shape of a DMA engine such as IOAT or a GPU copy engine.
 * <p>
 * Interrupts: a descriptor with {@link #FLAG_INTERRUPT} makes the engine signal vector {@link #IRQ_VECTOR} of its
 * function once it is done with that descriptor, after its status write-back (whether the descriptor completed or
 * faulted), as IOAT's per-descriptor interrupt-enable bit does: an MSI-X message when the driver enabled MSI-X, else
 * MSI, else a pulse of INTx. A message waits as a pending bit while its vector is masked. A descriptor whose
 * fetch itself faults has no flags the engine could read and raises nothing.
 */
public final class CopyEngineRegs {
    private CopyEngineRegs() {
    }

    /** RO: identifies the engine, {@link #ID_VALUE}. */
    public static final int REG_ID = 0x00;
    /** RO: {@link #STATUS_ENABLED}, {@link #STATUS_HALTED}. */
    public static final int REG_STATUS = 0x08;
    /** RW: {@link #CTRL_ENABLE}; writing {@link #CTRL_RESET} resets the ring state and clears a halt. */
    public static final int REG_CTRL = 0x10;
    /** RW: bus address of the descriptor ring (written while disabled). */
    public static final int REG_RING_BASE = 0x18;
    /** RW: number of descriptors in the ring, a power of two 2..4096 (written while disabled). */
    public static final int REG_RING_SIZE = 0x20;
    /** RO: index of the next descriptor the engine will fetch. */
    public static final int REG_RING_HEAD = 0x28;
    /** WO doorbell: index one past the last descriptor the driver filled; the engine processes up to it. */
    public static final int REG_RING_TAIL = 0x30;
    /** RO: descriptors completed since reset. */
    public static final int REG_COMPLETED = 0x38;
    /** RO: bus address of the last access that faulted. */
    public static final int REG_FAULT_ADDR = 0x40;

    public static final long ID_VALUE = 0x1da0_ce01L;
    public static final long STATUS_ENABLED = 1;
    public static final long STATUS_HALTED = 2;
    public static final long CTRL_ENABLE = 1;
    public static final long CTRL_RESET = 2;

    /** Bytes per descriptor. */
    public static final int DESC_SIZE = 32;
    /** Descriptor field: u64 source bus address. */
    public static final int DESC_SRC = 0;
    /** Descriptor field: u64 destination bus address. */
    public static final int DESC_DST = 8;
    /** Descriptor field: u32 length in bytes, 1..16 MiB. */
    public static final int DESC_LEN = 16;
    /** Descriptor field: u32 flags, {@link #FLAG_FILL} and {@link #FLAG_INTERRUPT}. */
    public static final int DESC_FLAGS = 20;
    /** Descriptor field: u32 status the engine writes back. */
    public static final int DESC_STATUS = 24;
    /** Descriptor field: u32 cookie the driver chooses, left untouched. */
    public static final int DESC_COOKIE = 28;

    /** Flag: fill the destination with the low byte of the source field instead of copying. */
    public static final int FLAG_FILL = 1;
    /** Flag: signal vector {@link #IRQ_VECTOR} once this descriptor is done (completed or faulted). */
    public static final int FLAG_INTERRUPT = 2;

    /** The interrupt vector of the engine's function that {@link #FLAG_INTERRUPT} raises. */
    public static final int IRQ_VECTOR = 0;

    /** Largest length of one descriptor. */
    public static final int MAX_LENGTH = 16 << 20;

    /** Status: not processed yet (drivers write it when filling). */
    public static final int ST_PENDING = 0;
    /** Status: done. */
    public static final int ST_OK = 1;
    /** Status: reading the source faulted. */
    public static final int ST_READ_FAULT = 2;
    /** Status: writing the destination faulted. */
    public static final int ST_WRITE_FAULT = 3;
    /** Status: malformed descriptor (length 0 or too large, unknown flags); it still raises its interrupt if it asked for one. */
    public static final int ST_BAD_DESC = 4;
}
