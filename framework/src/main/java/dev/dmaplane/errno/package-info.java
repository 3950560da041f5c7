/** Kernel error numbers and the exception that carries them. */
@Export
@Version("1.2.0")
package dev.dmaplane.errno;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
