/**
 * The headline demo as a library: GPUDirect RDMA between the GPU's VRAM and a Soft-RoCE HCA through a dma-buf
 * ({@code ibv_reg_dmabuf_mr} on a PRIME export), the bounce path beside it, a HCA with no peer-to-peer path, eviction
 * under traffic and the fallbacks real users meet; {@link dev.dmaplane.gpudirect.GpuDirect#run} runs them on a
 * machine whose GPU driver and rxe devices are bound.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.gpudirect;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
