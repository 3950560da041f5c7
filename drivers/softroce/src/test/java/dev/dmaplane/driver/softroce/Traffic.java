package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WorkCompletion;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;

/** Traffic that keeps an HCA busy until its device goes away, for the unplug and unbind tests. */
final class Traffic {
    private Traffic() {
    }

    /**
     * A thread posting signaled 64 KiB writes on {@code qp} until the device refuses (EIO), for at most 20 s. A
     * polling poster also polls its host's CQ after each post into {@link #completions}, so that however long it
     * runs the CQ never overflows; otherwise the test polls.
     */
    static final class Poster extends Thread {
        final QueuePair qp;
        final Hcas.Host from;
        final Hcas.Host to;
        final AtomicLong posted = new AtomicLong();
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        final List<WorkCompletion> completions = Collections.synchronizedList(new ArrayList<>());
        private final boolean polls;

        Poster(QueuePair qp, Hcas.Host from, Hcas.Host to) {
            this(qp, from, to, false);
        }

        Poster(QueuePair qp, Hcas.Host from, Hcas.Host to, boolean polls) {
            super("poster-" + from.dev);
            this.qp = qp;
            this.from = from;
            this.to = to;
            this.polls = polls;
        }

        @Override
        public void run() {
            long deadline = System.nanoTime() + 20_000_000_000L;
            long id = 0;
            try {
                while (System.nanoTime() < deadline) {
                    try {
                        qp.postSend(new SendWr.RdmaWrite(id, List.of(from.sge(0, 65536)), SIGNALED,
                                to.buf + (id % 32) * 65536, to.mr.rkey()));
                        posted.incrementAndGet();
                        id++;
                        if (polls) {
                            completions.addAll(from.cq.poll(64));
                        }
                    } catch (ErrnoException e) {
                        if (e.errno() == Errno.EIO) {
                            return; // the device went away
                        }
                        if (polls) {
                            completions.addAll(from.cq.poll(64));
                        }
                        Thread.onSpinWait(); // ENOMEM: queue full, the HCA is busy
                    }
                }
            } catch (Throwable t) {
                failure.set(t);
            }
        }
    }

    /** Polls {@code host}'s CQ until {@code n} completions came or 10 s passed. */
    static List<WorkCompletion> drain(Hcas.Host host, long n) {
        List<WorkCompletion> all = new ArrayList<>();
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (all.size() < n && System.nanoTime() < deadline) {
            all.addAll(host.cq.poll(256));
        }
        return all;
    }
}
