/** User contexts with handle tables of refcounted objects, per-device limits, and disassociation on removal. */
@Export
@Version("1.1.0")
package dev.dmaplane.resource;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
