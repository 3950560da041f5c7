/** perftest-style tools over the RDMA verbs: {@link dev.dmaplane.perftest.Perftest#run}. */
@Export
@Version("0.2.0")
package dev.dmaplane.perftest;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
