/**
 * The provider SPI: what an HCA driver implements ({@link dev.dmaplane.rdma.spi.RdmaProvider}, after
 * {@code struct ib_device_ops}) and what the core gives it back ({@link dev.dmaplane.rdma.spi.RdmaDeviceHandle},
 * the {@code Hw*} views of objects, {@link dev.dmaplane.rdma.spi.MemoryAccess} for keys and DMA).
 *
 * <h2>Division of work</h2>
 * The core validates every verb and keeps the bookkeeping; the provider is the hardware. A send work request
 * travels like this:
 * <ol>
 *   <li>{@code QueuePair.postSend} checks it (QP state, opcode for the QP type, SGE count, inline size, atomic
 *       alignment, UD destination), copies inline data, queues a {@link dev.dmaplane.rdma.spi.SendWqe} and rings
 *       {@link dev.dmaplane.rdma.spi.RdmaProvider#postSend}.</li>
 *   <li>The provider, on its own thread or in the doorbell, takes entries with
 *       {@link dev.dmaplane.rdma.spi.HwQp#nextSend()}, reads the payload with
 *       {@link dev.dmaplane.rdma.spi.MemoryAccess#gather} (or a {@link dev.dmaplane.rdma.spi.DmaLease}), delivers
 *       it (for a Soft-RoCE HCA: packets over its fabric to the QP named by the destination QPN, found at the far
 *       end with {@link dev.dmaplane.rdma.spi.RdmaDeviceHandle#qp}), where the responder takes a receive with
 *       {@link dev.dmaplane.rdma.spi.HwQp#takeRecv()}, scatters with
 *       {@link dev.dmaplane.rdma.spi.MemoryAccess#scatter} or checks an rkey with
 *       {@link dev.dmaplane.rdma.spi.MemoryAccess#remote}, and completes with
 *       {@link dev.dmaplane.rdma.spi.HwQp#completeRecv}.</li>
 *   <li>The requester completes with {@link dev.dmaplane.rdma.spi.HwQp#completeSend}; the core writes the CQE if
 *       signaled, raises the completion event of an armed CQ, handles CQ overrun, moves the QP to ERR or SQE on a
 *       failure (unless {@link dev.dmaplane.rdma.spi.RdmaProvider#completionErrorMovesQp} says no) and flushes the
 *       rest.</li>
 * </ol>
 * Local operations (BIND_MW, LOCAL_INV) are executed in queue order by
 * {@link dev.dmaplane.rdma.spi.MemoryAccess#executeLocal}. All memory is reached through the bus master of
 * {@link dev.dmaplane.rdma.spi.RdmaProvider#dmaDevice()}: the IOMMU checks every byte.
 *
 * <h2>Threads and locks</h2>
 * Every core method a provider calls is thread-safe and never calls back into the provider. Hooks are called
 * without core locks held. A lease must be closed before the provider touches the address space or waits for
 * anything that may deregister a region, but for a {@link dev.dmaplane.rdma.spi.DmaLease#retain() retained} one,
 * which holds off nothing (siw's memory reference kept across a READ's response segments). Hold one lease at a
 * time, except that a {@link dev.dmaplane.rdma.spi.DmaLease#stable() stable} lease may stay open while others are
 * taken (a cut-through transfer): a lease of an on-demand region may fault pages in, and one of a dma-buf region may take the buffer's
 * reservation lock to map it again after a move, while the exporter's {@code move_notify} (holding that lock)
 * waits for the leases of the buffer's regions to close.
 */
@Export
@Version("1.4.0")
package dev.dmaplane.rdma.spi;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
