package dev.dmaplane.driver.gpu.model;

/**
 * The GPU's datasheet: BAR0 registers, the ring descriptor, the GPU MMU's page-table entries and the compute kernels.
 * <p>
 * <b>BAR0</b> is 16 MiB of 64-bit registers (every register is 8 bytes wide and must be accessed with 8-byte
 * loads and stores); the MSI-X table and PBA live in its second half, where the machine file puts them. The first
 * half holds a global block at {@code 0x0}, the GPU MMU block at {@link #MMU_BASE} and one ring block per engine at
 * {@link #engineBase(int)}. Every engine has the same ring block; engine {@code e} of {@link #ENGINE_NAMES} is
 * {@code ce0}, {@code ce1} (copy class: {@link #OP_COPY}, {@link #OP_FILL}) or {@code compute} ({@link #OP_KERNEL}).
 * <p>
 * <b>Addresses.</b> A <em>physical</em> address carries an aperture in bit 63: set ({@link #APERTURE_SYSTEM}) is a
 * bus address in bits 0..62, reached by DMA through the GPU function's bus master, so the IOMMU translates and checks
 * every access; clear is a VRAM offset below {@link #REG_VRAM_SIZE}. VRAM below {@link #REG_VISIBLE_SIZE} is also the
 * CPU- and peer-visible BAR window; VRAM above it is reachable only by the engines. Ring bases and fence addresses
 * are physical. A descriptor's operands are GPU virtual addresses of its VM, translated by the GPU MMU, except in
 * VM 0 with {@link #FLAG_PHYSICAL}, where they are physical.
 * <p>
 * <b>GPU MMU.</b> {@link #VM_COUNT} VM slots; {@code VM_ROOT(vm)} holds the VRAM offset of the VM's top-level table
 * (0 = VM off; VM 0 has no root, it is the physical VM). GPU pages are 4 KiB and a GPU VA has {@link #VA_BITS} bits.
 * The walk has three levels: level 2 (the root, an 8 KiB table of 1024 entries indexed by VA bits 39..30), level 1
 * (a 4 KiB table of 512 entries, bits 29..21) and level 0 (4 KiB, 512 entries, bits 20..12). Tables live in VRAM,
 * aligned to 4 KiB. An entry is a little-endian u64: {@link #PTE_VALID}, {@link #PTE_WRITABLE},
 * {@link #PTE_SYSTEM} (the address is a bus address, else a VRAM offset), {@link #PTE_HUGE} (only at level 1: the
 * entry maps a 2 MiB page, its address 2 MiB aligned) and the address in {@link #PTE_ADDR_MASK}. A table entry
 * (level 2, or level 1 without {@code PTE_HUGE}) must be valid, in VRAM and not {@code PTE_SYSTEM}; its writable bit
 * is ignored. Each engine caches up to 256 translations in its own TLB: after changing page tables, write the VM id (or
 * {@link #TLB_INVALIDATE_ALL}) to {@link #REG_TLB_INVALIDATE}. A missing or invalid entry, a write to a page
 * without {@code PTE_WRITABLE}, a VA of {@link #VA_BITS} bits or more, or a VRAM address beyond VRAM is a GPU page
 * fault: the first one is latched in {@link #REG_MMU_FAULT_STATUS} / {@link #REG_MMU_FAULT_ADDR} until cleared, the
 * job ends with {@link #ST_PAGE_FAULT}, the engine halts and raises its interrupt.
 * <p>
 * <b>Ring.</b> A ring is {@code RING_SIZE} (a power of two, 2..{@link #MAX_RING_ENTRIES}) descriptors of
 * {@link #DESC_SIZE} bytes at physical address {@code RING_BASE} (64-byte aligned); both are taken only while the
 * engine is disabled. {@code RING_HEAD} and {@code RING_TAIL} are free-running indices; descriptor {@code i} sits at
 * slot {@code i & (size - 1)}. Writing {@code RING_TAIL} is the doorbell: it records the tail and wakes the engine's
 * thread, which runs descriptors from the head up to the tail. After each descriptor the engine writes its status
 * into the descriptor ({@link #DESC_STATUS}, a u32), and, if it ended {@link #ST_OK}, the descriptor's u64 seqno to
 * {@code FENCE_ADDR} (a physical address; 0 = no fence write) and into {@code COMPLETED_SEQNO}; then it advances the
 * head and raises MSI-X vector {@code IRQ_VECTOR} if the descriptor has {@link #FLAG_INTERRUPT}. A descriptor ending
 * in any other status (also a ring fetch or write-back refused) records the status and address in
 * {@code FAULT_STATUS}/{@code FAULT_ADDR}, halts the engine ({@link #CTRL_HALTED}), writes no fence and always
 * raises the interrupt. Writing {@link #CTRL_RESET} (with or without {@link #CTRL_ENABLE}) aborts a running job
 * within a bounded time (a {@link #KERNEL_SPIN} included), clears the halt and the fault registers, sets the head to
 * the tail and sets the enable bit as written; the ring configuration stays.
 * <p>
 * <b>Descriptor</b> (64 bytes, little-endian): u32 opcode at {@link #DESC_OPCODE}, u32 flags at
 * {@link #DESC_FLAGS}, u32 VM id at {@link #DESC_VM}, u32 status at {@link #DESC_STATUS} (written back), u64 seqno at
 * {@link #DESC_SEQNO}, five u64 operands at {@link #DESC_ARG0}..{@link #DESC_ARG4}:
 * <ul>
 *   <li>{@link #OP_COPY}: ARG0 source, ARG1 destination, ARG2 length in bytes (copied front to back in chunks of
 *       {@link #CHUNK} bytes; overlapping ranges are undefined).</li>
 *   <li>{@link #OP_FILL}: ARG0 destination, ARG1 length in bytes, ARG2 a 32-bit pattern whose little-endian bytes
 *       repeat from the destination (byte {@code i} is pattern byte {@code i % 4}). Pattern 0 is the hardware
 *       clear (what amdgpu's VRAM clear for {@code AMDGPU_GEM_CREATE_VRAM_CLEARED} uses): VRAM reads back as zeros
 *       but never-written VRAM is left untouched (it costs no memory), written VRAM is zeroed in place; SYSTEM
 *       pages are written with zeros by DMA. Faults, resets between chunks and statistics are those of any
 *       fill.</li>
 *   <li>{@link #OP_KERNEL}: ARG0 the kernel id, ARG1..ARG4 its arguments (see the kernel constants).</li>
 * </ul>
 * An opcode the engine's class does not run, unknown flags, a zero length or count, an unknown kernel, a VM id of
 * {@link #VM_COUNT} or more, a VM whose root is 0, VM 0 without {@link #FLAG_PHYSICAL} or {@code FLAG_PHYSICAL}
 * outside VM 0 is {@link #ST_BAD_DESC}.
 * <p>
 * <b>Statistics</b>: {@code BUSY_NS} (nanoseconds spent running descriptors) and {@code JOBS_COMPLETED}
 * (descriptors ended, whatever their status) per engine, zeroed by a function reset.
 */
public final class GpuRegs {
    private GpuRegs() {
    }

    // ---- global block

    /** Reads {@link #ID_VALUE}. */
    public static final int REG_ID = 0x000;
    /** Number of engines: 3. */
    public static final int REG_ENGINES = 0x008;
    /** Total VRAM in bytes (the machine file's {@code vramSize}). */
    public static final int REG_VRAM_SIZE = 0x010;
    /** CPU-visible VRAM in bytes: the size of the VRAM BAR. */
    public static final int REG_VISIBLE_SIZE = 0x018;
    /** Bit {@code e} ({@link #STATUS_BUSY}) engine {@code e} runs a job; bit {@code 8 + e} it is halted. */
    public static final int REG_STATUS = 0x020;
    /** Number of GPU MMU VM slots ({@link #VM_COUNT}). */
    public static final int REG_VM_COUNT = 0x028;

    public static final long ID_VALUE = 0x1da0_0001_6770_0001L;
    public static final int STATUS_BUSY = 0;
    public static final int STATUS_HALTED = 8;

    // ---- GPU MMU block

    public static final int MMU_BASE = 0x1000;
    /** VM slots; VM 0 is the physical VM, 1..{@code VM_COUNT - 1} are user VMs. */
    public static final int VM_COUNT = 16;
    /** Write a VM id to drop that VM's translations from every engine's TLB, or {@link #TLB_INVALIDATE_ALL}. */
    public static final int REG_TLB_INVALIDATE = MMU_BASE + 0x80;
    /** {@link #MMU_FAULT_VALID}, access, engine, VM and reason of the first unhandled fault; writing 1 clears it. */
    public static final int REG_MMU_FAULT_STATUS = MMU_BASE + 0x88;
    /** The GPU virtual address of the latched fault. */
    public static final int REG_MMU_FAULT_ADDR = MMU_BASE + 0x90;
    /** Page faults since the last function reset, latched or not. */
    public static final int REG_MMU_FAULT_COUNT = MMU_BASE + 0x98;
    public static final long TLB_INVALIDATE_ALL = 0xFFFF_FFFFL;

    /** Bit 0: a fault is latched. */
    public static final long MMU_FAULT_VALID = 1;
    /** Bit 1: the faulting access was a write. */
    public static final long MMU_FAULT_WRITE = 2;
    /** Bits 8..15: the engine; bits 16..23: the VM; bits 24..31: the reason ({@code FAULT_*}). */
    public static final int MMU_FAULT_ENGINE_SHIFT = 8;
    public static final int MMU_FAULT_VM_SHIFT = 16;
    public static final int MMU_FAULT_REASON_SHIFT = 24;
    /** No valid entry at some level of the walk. */
    public static final int FAULT_NOT_PRESENT = 1;
    /** A write to a page without {@link #PTE_WRITABLE}. */
    public static final int FAULT_READ_ONLY = 2;
    /** A VA of {@link #VA_BITS} bits or more, or a VRAM address beyond VRAM. */
    public static final int FAULT_RANGE = 3;
    /** A table entry pointing outside VRAM or with {@link #PTE_SYSTEM}, or {@code PTE_HUGE} at level 0 or 2. */
    public static final int FAULT_BAD_TABLE = 4;

    /** {@code VM_ROOT(vm)}: VRAM offset (4 KiB aligned) of VM {@code vm}'s 8 KiB root table; 0 = off. */
    public static int regVmRoot(int vm) {
        return MMU_BASE + 8 * vm;
    }

    public static final int VA_BITS = 40;
    public static final int PAGE_SHIFT = 12;
    public static final long PAGE_SIZE = 1L << PAGE_SHIFT;
    public static final long HUGE_PAGE_SIZE = 2L << 20;
    /** Entries of the root table (8 KiB); lower levels have 512 (4 KiB). */
    public static final int ROOT_ENTRIES = 1024;
    public static final int TABLE_ENTRIES = 512;
    public static final long PTE_VALID = 1;
    public static final long PTE_WRITABLE = 2;
    public static final long PTE_SYSTEM = 4;
    public static final long PTE_HUGE = 8;
    /** Address bits 12..62 of an entry (a bus address with {@link #PTE_SYSTEM}, else a VRAM offset). */
    public static final long PTE_ADDR_MASK = 0x7FFF_FFFF_FFFF_F000L;

    // ---- engines

    public static final String[] ENGINE_NAMES = {"ce0", "ce1", "compute"};
    public static final int ENGINE_COUNT = 3;
    public static final int ENGINE_CE0 = 0;
    public static final int ENGINE_CE1 = 1;
    public static final int ENGINE_COMPUTE = 2;
    public static final int ENGINE_BASE = 0x10000;
    public static final int ENGINE_STRIDE = 0x1000;

    /** The offset of engine {@code e}'s ring block; add a {@code RING_*} offset. */
    public static int engineBase(int e) {
        return ENGINE_BASE + ENGINE_STRIDE * e;
    }

    /** Engine class: {@link #CLASS_COPY} or {@link #CLASS_COMPUTE}. */
    public static final int RING_CLASS = 0x00;
    /**
     * {@link #CTRL_ENABLE} (taken only once {@code RING_SIZE} is set), {@link #CTRL_RESET} (write; the reset is done
     * when the write returns); reads {@link #CTRL_HALTED} and {@link #CTRL_BUSY} too.
     */
    public static final int RING_CTRL = 0x08;
    public static final int RING_BASE = 0x10;
    public static final int RING_SIZE = 0x18;
    /** Read-only: free-running index of the next descriptor to run. */
    public static final int RING_HEAD = 0x20;
    /** The doorbell: free-running index one past the last descriptor filled; reads back the last value written. */
    public static final int RING_TAIL = 0x28;
    public static final int RING_FENCE_ADDR = 0x30;
    /** Read-only: the seqno of the last descriptor that ended {@link #ST_OK}. */
    public static final int RING_COMPLETED_SEQNO = 0x38;
    /** The MSI-X vector this engine raises; power-on value: the engine's index. */
    public static final int RING_IRQ_VECTOR = 0x40;
    /** Read-only: the status that halted the engine (0 = none). */
    public static final int RING_FAULT_STATUS = 0x48;
    /**
     * Read-only: the address that faulted: the GPU VA for {@link #ST_PAGE_FAULT} (a physical VRAM offset in VM 0),
     * the aperture-tagged bus address the IOMMU refused for {@link #ST_DMA_FAULT}, the ring tail for a doorbell
     * more than a ring ahead; 0 for other statuses.
     */
    public static final int RING_FAULT_ADDR = 0x50;
    public static final int RING_BUSY_NS = 0x58;
    public static final int RING_JOBS_COMPLETED = 0x60;

    public static final long CLASS_COPY = 1;
    public static final long CLASS_COMPUTE = 2;
    public static final long CTRL_ENABLE = 1;
    public static final long CTRL_RESET = 2;
    public static final long CTRL_HALTED = 4;
    public static final long CTRL_BUSY = 8;
    public static final int MAX_RING_ENTRIES = 65536;
    /** Bit 63 of a physical address: a bus address (SYSTEM aperture); clear: a VRAM offset. */
    public static final long APERTURE_SYSTEM = 1L << 63;

    // ---- descriptors

    public static final int DESC_SIZE = 64;
    public static final int DESC_OPCODE = 0x00;
    public static final int DESC_FLAGS = 0x04;
    public static final int DESC_VM = 0x08;
    public static final int DESC_STATUS = 0x0C;
    public static final int DESC_SEQNO = 0x10;
    public static final int DESC_ARG0 = 0x18;
    public static final int DESC_ARG1 = 0x20;
    public static final int DESC_ARG2 = 0x28;
    public static final int DESC_ARG3 = 0x30;
    public static final int DESC_ARG4 = 0x38;

    public static final int OP_COPY = 1;
    public static final int OP_FILL = 2;
    public static final int OP_KERNEL = 3;
    /** Raise the engine's vector after the descriptor (a fault raises it anyway). */
    public static final int FLAG_INTERRUPT = 1;
    /** Operands are physical addresses; only in VM 0, for the kernel driver's own jobs. */
    public static final int FLAG_PHYSICAL = 2;
    /** Bytes an engine moves or computes on at a time; a reset takes effect between chunks. */
    public static final int CHUNK = 64 * 1024;

    public static final int ST_PENDING = 0;
    public static final int ST_OK = 1;
    public static final int ST_BAD_DESC = 2;
    /** A GPU MMU fault, latched in the MMU fault registers. */
    public static final int ST_PAGE_FAULT = 3;
    /** A SYSTEM access refused by the IOMMU or the fabric (also a ring fetch or write-back). */
    public static final int ST_DMA_FAULT = 4;
    /** The engine itself failed (a model error, logged with its stack); reset the engine. */
    public static final int ST_DEVICE_ERROR = 5;

    // ---- compute kernels (OP_KERNEL, ARG0 = kernel id)

    /** {@code y[i] = a * x[i] + y[i]} in f32 for {@code i < n}: ARG1 x, ARG2 y, ARG3 n, ARG4 a (f32 bits, low 32). */
    public static final int KERNEL_SAXPY = 1;
    /**
     * The f32 sum of {@code x[0..n)} into the f32 at ARG2: ARG1 x, ARG2 out, ARG3 n. Order: each block of
     * {@link #SUM_BLOCK} elements is summed from 0.0f front to back, then the block partials are summed from 0.0f
     * in block order, all in f32 (a Java {@code float} loop gives the same bits).
     */
    public static final int KERNEL_SUM = 2;
    /**
     * CRC32C (RFC 3720, {@code java.util.zip.CRC32C}) of ARG3 bytes at ARG1 into the u32 at ARG2, continuing from
     * the CRC32C in ARG4 (low 32 bits): with seed {@code crc32c(A)} the result is {@code crc32c(A || B)}; seed 0 is a
     * fresh CRC.
     */
    public static final int KERNEL_CRC32C = 3;
    /** Runs until the engine is reset: the hung job. No arguments. */
    public static final int KERNEL_SPIN = 4;
    public static final int SUM_BLOCK = 256;
}
