/** The register and descriptor layout of the emulated copy engine, for drivers that program it. */
@Export
@Version("1.1.0")
package dev.dmaplane.hw.copyengine;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
