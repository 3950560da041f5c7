package dev.dmaplane.driver.crc;

import org.osgi.annotation.versioning.ProviderType;

/** One bound CRC32C engine, as a hardware {@code crc32c} shash ({@code crypto/crc32c_generic.c} in software). */
@ProviderType
public interface CrcOffload {
    /** Largest buffer of one request. */
    int MAX_LENGTH = 16 << 20;

    /** The engine's PCI function, {@code DDDD:BB:DD.F}. */
    String device();

    /**
     * The CRC32C of {@code length} bytes of host RAM at {@code physAddr}, continued from {@code seed} (the CRC32C of
     * the bytes before, 0 to start). The buffer is DMA-mapped for the request only ({@code dma_map_single}) and
     * unmapped before this returns; the caller blocks until the engine's completion interrupt, at most a bounded time.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a length outside 1..{@link #MAX_LENGTH};
     *                                           {@code EFAULT} for a buffer outside host RAM; {@code EIO} when
     *                                           the engine faults or stops;
     *                                           {@code ETIMEDOUT} without completion in time; {@code ENODEV}
     *                                           once the engine is removed
     */
    int crc32c(long physAddr, int length, int seed);
}
