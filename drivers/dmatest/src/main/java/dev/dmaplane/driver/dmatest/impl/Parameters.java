package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;

import java.time.Duration;
import java.util.Objects;

/**
 * dmatest's module parameters ({@code /sys/module/dmatest/parameters/}): buffer size as a page order
 * ({@code test_buf_size}), number of random copies ({@code iterations}), the seed of their offsets and lengths and
 * how long to wait for one transaction's callback ({@code timeout}).
 */
record Parameters(int bufferOrder, int copies, long seed, Duration timeout) {
    /** A 16 KiB buffer (dmatest's default {@code test_buf_size}), four copies, 5 s per transaction. */
    static final Parameters DEFAULTS = new Parameters(2, 4, 0x646d61L, Duration.ofSeconds(5));

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

    long bufferSize() {
        return HostMemory.PAGE_SIZE << bufferOrder;
    }
}
