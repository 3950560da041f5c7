package dev.dmaplane.gpudirect.bench;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.trace.TraceEvent;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;

import java.time.Duration;
import java.util.HashSet;
import java.util.Set;

/**
 * The copy engine's time on buffer moves, as {@code gpuvis} reads it from the {@code drm_run_job} and
 * {@code drm_sched_process_job} tracepoints: from the first kernel-priority job the scheduler ran since
 * {@link #start} to the last of them done, so what a move costs, without the page allocation and mapping around it.
 */
final class MoveClock implements AutoCloseable {
    private static final Duration WAIT = Duration.ofSeconds(30);

    private final AutoCloseable subscription;
    /** The finished fences ({@code timeline#seqno}) of kernel jobs run and not yet done. */
    private final Set<String> running = new HashSet<>();
    private long firstRun;
    private long lastDone;

    MoveClock(Tracer tracer) {
        subscription = tracer.subscribe(this::event);
    }

    private synchronized void event(TraceEvent e) {
        String d = e.detail();
        if (e.kind() != TraceKind.SCHED || !d.contains("(KERNEL)")) {
            return;
        }
        String job = d.substring(d.lastIndexOf(' ') + 1);
        if (d.startsWith("run ")) {
            if (firstRun == 0) {
                firstRun = e.timeNanos();
            }
            running.add(job);
        } else if (d.startsWith("done") && running.remove(job)) {
            lastDone = e.timeNanos();
            notifyAll();
        }
    }

    /** Forgets the jobs seen so far. */
    synchronized void start() {
        firstRun = 0;
        lastDone = 0;
        running.clear();
    }

    /**
     * Nanoseconds from the first kernel job run since {@link #start} to the last of them done, once all are done
     * (their fences signal just before the scheduler reports them); {@code EIO} when none ran, {@code ETIME} when
     * one is not done within 30 s.
     */
    synchronized long nanos() {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (!running.isEmpty()) {
            long left = deadline - System.nanoTime();
            ErrnoException.check(left > 0, Errno.ETIME, "kernel jobs " + running + " not done after " + WAIT);
            try {
                wait(Math.max(1, left / 1_000_000));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new ErrnoException(Errno.EINTR, "interrupted waiting for kernel jobs " + running, e);
            }
        }
        ErrnoException.check(firstRun != 0 && lastDone > firstRun, Errno.EIO, "no kernel job ran since start");
        return lastDone - firstRun;
    }

    @Override
    public void close() {
        try {
            subscription.close();
        } catch (Exception e) { // the tracer's handle only removes a list entry
            throw new IllegalStateException("trace subscription did not close", e);
        }
    }
}
