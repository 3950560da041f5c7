/**
 * An SPDK-style user-space NVMe driver over VFIO ({@code lib/nvme/nvme_pcie.c}, {@code nvme_pcie_qpair.c}): polled
 * queue pairs, pinned buffers at IOVA = VA, and {@code nvme perf} after {@code app/spdk_nvme_perf/perf.c}.
 */
@Export
@Version("1.1.0")
package dev.dmaplane.nvmeuser;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
