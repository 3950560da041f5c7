package dev.dmaplane.rdma.verbs;

/**
 * What a memory window is bound to ({@code struct ibv_mw_bind_info}): a range of a memory region and the remote
 * access the window grants. A null region with zero address and length unbinds a type 1 window.
 *
 * @param mr             the region, or null to unbind
 * @param addr           first address of the window inside the region
 * @param length         bytes
 * @param mwAccessFlags  {@link Access} flags granted through the window (remote ones, and ZERO_BASED)
 */
public record MwBindInfo(MemoryRegion mr, long addr, long length, int mwAccessFlags) {
}
