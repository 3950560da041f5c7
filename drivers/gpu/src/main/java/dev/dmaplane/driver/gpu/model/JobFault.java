package dev.dmaplane.driver.gpu.model;

import java.io.Serial;

/**
 * Why an engine stopped a descriptor (the status a GPU writes back, as an amdgpu or nouveau fault entry records it):
 * thrown inside a job, caught by the engine running it and turned into the descriptor's status and the fault
 * registers. Stack traces are not filled in: this is a device status, not a bug.
 */
final class JobFault extends RuntimeException {
    @Serial
    private static final long serialVersionUID = 1L;

    /** Not a device status: the engine was reset under the job, which ends with no write-back. */
    static final int ABORTED = -1;

    /** A {@code ST_*} status of {@link GpuRegs}. */
    final int status;
    /** The faulting address: a GPU VA, or an aperture-tagged physical address. */
    final long address;
    /** For {@link GpuRegs#ST_PAGE_FAULT}: a {@code FAULT_*} reason; else 0. */
    final int reason;
    final boolean write;

    JobFault(int status, long address, int reason, boolean write, String message) {
        super(message, null, false, false);
        this.status = status;
        this.address = address;
        this.reason = reason;
        this.write = write;
    }

    static JobFault badDesc(String message) {
        return new JobFault(GpuRegs.ST_BAD_DESC, 0, 0, false, message);
    }

    static JobFault aborted() {
        return new JobFault(ABORTED, 0, 0, false, "aborted by an engine reset");
    }

    static JobFault pageFault(long va, int reason, boolean write, String message) {
        return new JobFault(GpuRegs.ST_PAGE_FAULT, va, reason, write, message);
    }
}
