package dev.dmaplane.iommu;

/**
 * A recorded IOMMU fault ({@code struct iommu_fault}/{@code report_iommu_fault}): which device touched which
 * IOVA, how, and why it was refused.
 *
 * @param device    requester
 * @param domainId  domain the device was attached to
 * @param iova      the faulting bus address
 * @param write     whether the access was a write
 * @param reason    e.g. "not mapped", "read-only mapping", "blocked domain"
 * @param timeNanos {@link System#nanoTime()} of the fault
 */
public record IommuFault(String device, int domainId, long iova, boolean write, String reason, long timeNanos) {
    @Override
    public String toString() {
        return device + " " + (write ? "write" : "read") + " at iova 0x" + Long.toHexString(iova) + " in domain "
                + domainId + ": " + reason;
    }
}
