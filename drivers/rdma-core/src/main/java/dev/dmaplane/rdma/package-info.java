/**
 * The RDMA core (after the kernel's {@code ib_core} with {@code ib_uverbs}, and libibverbs): drivers register
 * RDMA devices with {@link dev.dmaplane.rdma.RdmaCore#registerDevice}, applications find them with
 * {@link dev.dmaplane.rdma.RdmaCore#devices()} and open them with {@link dev.dmaplane.rdma.RdmaDevice#open}. The
 * verbs live in {@link dev.dmaplane.rdma.verbs}, the provider SPI in {@link dev.dmaplane.rdma.spi}.
 */
@Export
@Version("1.1.0")
package dev.dmaplane.rdma;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
