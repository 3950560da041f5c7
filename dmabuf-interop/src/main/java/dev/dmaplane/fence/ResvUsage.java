package dev.dmaplane.fence;

/**
 * How the operation behind a fence uses a buffer, {@code enum dma_resv_usage} ({@code include/linux/dma-resv.h}).
 * The order is {@code KERNEL < WRITE < READ < BOOKKEEP}; asking a {@link Reservation} for the fences of one usage
 * returns those of every lower usage as well.
 */
public enum ResvUsage {
    /**
     * Kernel memory management (a copy or clear by a DMA engine, a move). Every access to the buffer waits for
     * these, unless the buffer is pinned in place.
     */
    KERNEL,
    /** An implicitly synchronised write by a user-space submission. */
    WRITE,
    /** An implicitly synchronised read by a user-space submission. */
    READ,
    /**
     * No implicit synchronisation: preemption fences, page-table updates and TLB flushes, explicitly synchronised
     * submissions. Only a wait that asks for {@code BOOKKEEP} explicitly (memory management before moving or
     * freeing the buffer) sees them.
     */
    BOOKKEEP;

    /**
     * {@code dma_resv_usage_rw}: the usage a new access must wait for. A writer waits for every earlier reader
     * and writer ({@link #READ} and below); a reader waits only for earlier writers ({@link #WRITE} and below),
     * so readers run concurrently.
     */
    public static ResvUsage forAccess(boolean write) {
        return write ? READ : WRITE;
    }

    /** Whether a query for this usage returns fences added with {@code usage} (that is, {@code usage <= this}). */
    public boolean includes(ResvUsage usage) {
        return usage.ordinal() <= ordinal();
    }
}
