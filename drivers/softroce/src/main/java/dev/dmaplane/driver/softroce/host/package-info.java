/** Soft-RoCE on a plain class path: a machine with the RDMA core and the rxe driver bound, in one call. */
@Export
@Version("1.2.0")
package dev.dmaplane.driver.softroce.host;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
