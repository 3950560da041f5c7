package dev.dmaplane.dmabuf;

import java.util.function.Supplier;

/** Runs a test's step with a buffer's reservation lock held, as the dma-buf calls that need it require. */
final class ResvLocked {
    private ResvLocked() {
    }

    static void locked(DmaBuf buf, Runnable r) {
        buf.resv().lock();
        try {
            r.run();
        } finally {
            buf.resv().unlock();
        }
    }

    static <T> T lockedGet(DmaBuf buf, Supplier<T> s) {
        buf.resv().lock();
        try {
            return s.get();
        } finally {
            buf.resv().unlock();
        }
    }
}
