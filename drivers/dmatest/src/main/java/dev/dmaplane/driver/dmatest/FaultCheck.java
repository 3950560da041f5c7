package dev.dmaplane.driver.dmatest;

/**
 * dmatest's negative test: a descriptor whose destination is an IOVA the driver has just unmapped (a
 * use-after-unmap, the bug the IOMMU exists to contain). It passes when the engine halts with
 * {@code ST_WRITE_FAULT} at that IOVA, the IOMMU records the fault ({@code report_iommu_fault}) and not one byte
 * of the page that used to be mapped there changed.
 *
 * @param outcome         passed, failed, or skipped when the device's DMA is not translated (no IOMMU, or an
 *                        identity domain): there the stale address would reach memory, as on real hardware
 * @param iova            the stale IOVA the descriptor named, or -1 when skipped
 * @param status          the status the engine wrote back ({@code CopyEngineRegs.ST_*}), or -1
 * @param faultAddress    what the engine's {@code REG_FAULT_ADDR} held afterwards, or -1
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
