/**
 * Management datagrams on the GSI ({@code rdma/ib_mad.h}, {@code drivers/infiniband/core/mad.c}): the 256-byte MADs
 * with their common header ({@link dev.dmaplane.rdma.mad.Mad}), sent and received through QP1 of a port by a
 * {@link dev.dmaplane.rdma.mad.MadAgent} that registered for a management class and class version
 * ({@code ib_register_mad_agent}). The core owns QP1: requests are retried after their timeout and completed by the
 * response with their transaction ID, or by a timeout once the retries are spent.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.rdma.mad;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
