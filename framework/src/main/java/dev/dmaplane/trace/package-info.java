/** Structured trace events of the simulated machine: an in-memory ring, JFR events and subscribers. */
@Export
@Version("1.4.0")
package dev.dmaplane.trace;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
