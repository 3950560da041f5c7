package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;

import java.time.Duration;
import java.util.Objects;

/**
 * dmatest's module parameters ({@code /sys/module/dmatest/parameters/}): buffer size as a page order
 * ({@code test_buf_size}), number of random copies ({@code iterations}), the seed of their offsets and lengths,
 * the descriptor ring size, how long to wait for one descriptor ({@code timeout}) and whether to poll for completion
 * instead of taking the engine's interrupt ({@code polled}).
 */
record Parameters(int bufferOrder, int copies, long seed, int ringEntries, Duration timeout, boolean polled) {
    /**
     * A 16 KiB buffer (dmatest's default {@code test_buf_size}), four copies, a 64-entry ring, 1 s per descriptor,
     * completion by interrupt.
     */
    static final Parameters DEFAULTS = new Parameters(2, 4, 0x646d61L, 64, Duration.ofSeconds(1), false);

    Parameters {
        if (bufferOrder < 0 || bufferOrder > HostMemory.MAX_ORDER) {
            throw new ErrnoException(Errno.EINVAL, "buffer order must be 0.." + HostMemory.MAX_ORDER + ", not " + bufferOrder);
        }
        if (copies < 1) {
            throw new ErrnoException(Errno.EINVAL, "copies must be >= 1, not " + copies);
        }
        Objects.requireNonNull(timeout, "timeout");
        if (timeout.isNegative() || timeout.isZero()) {
            throw new ErrnoException(Errno.EINVAL, "timeout must be positive, not " + timeout);
        }
    }

    /** These parameters with {@code polled} set as given. */
    Parameters withPolled(boolean polled) {
        return new Parameters(bufferOrder, copies, seed, ringEntries, timeout, polled);
    }

    long bufferSize() {
        return HostMemory.PAGE_SIZE << bufferOrder;
    }
}
