package dev.dmaplane.driver.crc;

import dev.dmaplane.errno.ErrnoException;
import org.osgi.annotation.versioning.ProviderType;

/** One bound CRC32C engine, as a hardware {@code crc32c} shash ({@code crypto/crc32c_generic.c} in software). */
@ProviderType
public interface CrcOffload {
    /** The engine's PCI function, {@code DDDD:BB:DD.F}. */
    String device();

    /**
     * The CRC32C of {@code length} bytes of host RAM at {@code physAddr}, mapped for this request ({@code dma_map_single}).
     *
     * @throws ErrnoException {@code EINVAL} for a length outside 1..16 MiB; {@code EFAULT} outside host RAM; {@code EIO}
     *                        if the engine faults; {@code ETIMEDOUT} (engine reset) without completion; {@code ENODEV} once removed
     */
    int crc32c(long physAddr, int length);
}
