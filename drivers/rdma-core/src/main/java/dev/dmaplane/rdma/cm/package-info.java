/**
 * The RDMA connection manager as librdmacm offers it ({@code rdma/rdma_cma.h}, rdma_cm(7)) over the kernel's
 * {@code drivers/infiniband/core/cma.c} and the IB CM ({@code cm.c}, IBTA chapter 12): an
 * {@link dev.dmaplane.rdma.cm.EventChannel} of {@link dev.dmaplane.rdma.cm.CmEvent}s, and
 * {@link dev.dmaplane.rdma.cm.CmId}s that resolve IP addresses to a device and port, resolve the route, carry a QP
 * the CM moves from INIT to RTS, and connect, listen, accept, reject and disconnect with the CM MADs (REQ, REP, RTU,
 * REJ, DREQ, DREP) on the ports' GSI. {@link dev.dmaplane.rdma.RdmaCore#cm()} gives the machine's instance.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.rdma.cm;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
