package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.errno.Errno;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * What halted an engine, read from its {@code FAULT_STATUS}/{@code FAULT_ADDR} and the MMU fault latch, as amdgpu's
 * {@code gmc_v*_process_interrupt} reads the VM fault registers. {@code mmuStatus} is 0 unless the latch named this
 * engine.
 */
public record HwFault(String engine, int status, long address, long mmuStatus, long mmuAddress) {
    /**
     * The errno the faulting job's fence carries: a GPU page fault {@code EFAULT}; a bad descriptor {@code EINVAL};
     * an IOMMU refusal and an engine failure {@code EIO}, the error i915 and xe put on the requests of a failed
     * engine ({@code i915_request_set_error_once(rq, -EIO)}).
     */
    public Errno errno() {
        return switch (status) {
            case ST_PAGE_FAULT -> Errno.EFAULT;
            case ST_BAD_DESC -> Errno.EINVAL;
            default -> Errno.EIO;
        };
    }

    @Override
    public String toString() {
        return String.format("%s fault status %d addr %#x (mmu %#x at %#x) -> %s", engine, status, address, mmuStatus,
                mmuAddress, errno());
    }
}
