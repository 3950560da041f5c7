package dev.dmaplane.trace;

/** What a {@link TraceEvent} records; the closed set of event kinds the core and its modules emit. */
public enum TraceKind {
    /** Pages pinned ({@code pin_user_pages}). */
    PIN,
    /** Pages unpinned ({@code unpin_user_pages}). */
    UNPIN,
    /** A range mapped into an IOMMU domain or through the DMA API. */
    MAP,
    /** A range unmapped from an IOMMU domain or through the DMA API. */
    UNMAP,
    /** A device access that the IOMMU or the bus refused ({@code report_iommu_fault}). */
    FAULT,
    /** An interval notifier told of an invalidated range ({@code mmu_interval_notifier}). */
    INVALIDATE,
    /** A page moved to another frame (migration). */
    MIGRATE,
    /** A device appeared on a bus. */
    DEVICE_ADD,
    /** A device left its bus (hot unplug). */
    DEVICE_REMOVE,
    /** A driver bound to a device (probe succeeded). */
    BIND,
    /** A driver was unbound from a device (remove ran). */
    UNBIND,
    /** A probe failed; the device stays unbound. */
    PROBE_FAILED,
    /** A driver registered with or left the driver core. */
    DRIVER,
    /** dma-debug found a misuse of the DMA API. */
    DMA_DEBUG,
    /** A user context was cut off from a departing device. */
    DISASSOCIATE,
    /** A device met a fatal internal error (a firmware crash, {@code IB_EVENT_DEVICE_FATAL}) and was cut off. */
    DEVICE_FATAL,
    /** dma-buf attach, map, move or revoke. */
    DMA_BUF,
    /** A peer-to-peer DMA decision ({@code drivers/pci/p2pdma.c}): map type and distance, p2pmem added, published, allocated, mapped. */
    P2PDMA,
    /** A fence was signalled. */
    FENCE,
    /** A GPU scheduler event ({@code gpu_scheduler_trace.h}): a job queued, run, done, timed out, cancelled. */
    SCHED,
    /** A PCI Express error the AER service driver handled ({@code aer_print_error} in {@code drivers/pci/pcie/aer.c}). */
    PCIE_ERROR,
    /** A work request posted to a queue pair (rdmavt's {@code rvt_post_one_wr}); only when asked, see {@link Tracer#setWorkRequests}. */
    POST,
    /** A work completion queued on a completion queue (rdmavt's {@code rvt_cq_enter}); only when asked. */
    COMPLETION
}
