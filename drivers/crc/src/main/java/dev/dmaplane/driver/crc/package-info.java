/**
 * CRC32C offload for whoever needs one: a {@link dev.dmaplane.driver.crc.CrcOffload} service per engine the crc
 * driver binds, as a hardware {@code crc32c} shash (a crypto driver's {@code crypto_register_shash}) is offered
 * to its users.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.driver.crc;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
