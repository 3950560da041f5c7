package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.concurrent.atomic.AtomicInteger;

/** A device limit (max_qp, max_cq, max_mr, ...) counted across all contexts. */
final class Limit {
    private final String device;
    private final String what;
    private final int max;
    private final AtomicInteger used = new AtomicInteger();

    Limit(String device, String what, int max) {
        this.device = device;
        this.what = what;
        this.max = max;
    }

    /** Takes one; {@code ENOMEM} ("not enough resources", as the create man pages say) at the limit. */
    void acquire() {
        while (true) {
            int u = used.get();
            if (u >= max) {
                throw new ErrnoException(Errno.ENOMEM, device + ": " + what + " limit " + max + " reached");
            }
            if (used.compareAndSet(u, u + 1)) {
                return;
            }
        }
    }

    void release() {
        used.decrementAndGet();
    }

    int used() {
        return used.get();
    }
}
