/** Implementation of the RDMA core; not exported. */
package dev.dmaplane.rdma.impl;
