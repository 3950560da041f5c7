package dev.dmaplane.resource;

/** Why an object is being destroyed ({@code enum rdma_remove_reason}). */
public enum RemoveReason {
    /** The user asked for it ({@code RDMA_REMOVE_DESTROY}); may be refused, e.g. while in use. */
    DESTROY,
    /** The context was closed ({@code RDMA_REMOVE_CLOSE}); must succeed. */
    CLOSE,
    /** The device is going away ({@code RDMA_REMOVE_DRIVER_REMOVE}); must succeed and release all hardware state. */
    DRIVER_REMOVE,
    /** Creation failed part way and is being undone ({@code RDMA_REMOVE_ABORT}). */
    ABORT
}
