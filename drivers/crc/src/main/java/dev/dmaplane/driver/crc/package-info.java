/** CRC32C offload: a {@link CrcOffload} service per engine the crc driver binds, as a crypto driver's {@code crc32c} shash. */
@Export
@Version("1.0.0")
package dev.dmaplane.driver.crc;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
