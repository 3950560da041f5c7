package dev.dmaplane.gpudirect;

import org.junit.jupiter.api.Test;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link ProcessCpuClock}: the process's CPU clock of clock_gettime(2), finer than the 10 ms clock tick. */
class ProcessCpuClockTest {
    /**
     * The process clock covers every thread, so around a busy loop of about a millisecond it advances at least as
     * far as this thread's own CPU clock ({@code CLOCK_THREAD_CPUTIME_ID}); a clock counted in 10 ms ticks mostly
     * does not move at all over such a loop.
     */
    @Test
    void theProcessClockAdvancesAtLeastAsFarAsThisThreadsOwn() {
        ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        for (int round = 0; round < 5; round++) {
            long process0 = ProcessCpuClock.nanos();
            long thread0 = threads.getCurrentThreadCpuTime();
            long sink = 0;
            while (threads.getCurrentThreadCpuTime() - thread0 < 1_000_000) {
                sink += System.nanoTime() & 1;
            }
            long thread = threads.getCurrentThreadCpuTime() - thread0;
            long process = ProcessCpuClock.nanos() - process0;
            assertTrue(process >= thread, "round " + round + ": the process clock advanced " + process
                    + " ns over a loop that took this thread " + thread + " ns of CPU (" + sink + ")");
        }
    }
}
