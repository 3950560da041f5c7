/**
 * Management datagrams on the GSI ({@code rdma/ib_mad.h}, {@code drivers/infiniband/core/mad.c}): the 256-byte MADs
 * with their common header ({@link dev.dmaplane.rdma.mad.Mad}), sent and received through QP1 of a port by a
 * {@link dev.dmaplane.rdma.mad.MadAgent} that registered for a management class and class version
 * ({@code ib_register_mad_agent}). The core owns QP1: a send is a {@link dev.dmaplane.rdma.mad.MadSendBuf}
 * ({@code struct ib_mad_send_buf}) with its sender's context; one that waits is retried after its timeout and
 * completed by the response with its transaction ID, or by a timeout once the retries are spent.
 */
@Export
@Version("2.0.0")
package dev.dmaplane.rdma.mad;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
