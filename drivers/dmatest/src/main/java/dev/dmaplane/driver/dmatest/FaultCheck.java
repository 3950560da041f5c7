package dev.dmaplane.driver.dmatest;

/**
 * dmatest's negative test: a transaction whose destination is an IOVA the client has just unmapped (a
 * use-after-unmap, the bug the IOMMU exists to contain). It passes when the channel ends the transaction
 * {@code DMA_TRANS_WRITE_FAILED}, the IOMMU records the write fault at that IOVA ({@code report_iommu_fault}) and not
 * one byte of the page that used to be mapped there changed.
 *
 * @param outcome         passed, failed, or skipped when the device's DMA is not translated (no IOMMU, or an
 *                        identity domain): there the stale address would reach memory, as on real hardware
 * @param iova            the stale IOVA the transaction named, or -1 when skipped
 * @param status          the ordinal of the {@link dev.dmaplane.dmaengine.DmaResult} its callback reported, or -1
 * @param faultAddress    the IOVA of the IOMMU's last write fault of the device since the check began, or -1
 * @param iommuFault      whether the IOMMU recorded a write fault of this device at {@code iova}
 * @param bytesChanged    bytes of the formerly mapped page that changed (must be 0)
 * @param detail          a sentence saying what happened
 */
public record FaultCheck(Outcome outcome, long iova, int status, long faultAddress, boolean iommuFault,
                         long bytesChanged, String detail) {

    /** How the check ended. */
    public enum Outcome {
        PASSED, FAILED, SKIPPED
    }

    /** A check that did not run, with the reason. */
    public static FaultCheck skipped(String why) {
        return new FaultCheck(Outcome.SKIPPED, -1, -1, -1, false, 0, why);
    }
}
