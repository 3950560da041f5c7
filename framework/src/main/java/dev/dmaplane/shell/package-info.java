/** Usage text of the Gogo shell's commands (OSGi RFC 147 command services), for every bundle that registers some. */
@Export
@Version("1.0.0")
package dev.dmaplane.shell;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
