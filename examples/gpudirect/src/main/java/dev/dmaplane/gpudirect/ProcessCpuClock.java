package dev.dmaplane.gpudirect;

import org.slf4j.LoggerFactory;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Optional;

/**
 * The process's CPU time to the nanosecond, {@code clock_gettime(CLOCK_PROCESS_CPUTIME_ID)} (clock_gettime(2)),
 * read through the FFM API. {@link ProcessHandle.Info#totalCpuDuration()} and the management beans read
 * {@code /proc} or {@code times(2)} in clock ticks of 10 ms, too coarse for a delivery of some tens of
 * milliseconds: two such figures were often the same count of ticks.
 */
final class ProcessCpuClock {
    /** {@code CLOCK_PROCESS_CPUTIME_ID} of {@code <linux/time.h>}. */
    private static final int CLOCK_PROCESS_CPUTIME_ID = 2;
    /** {@code clock_gettime}, or none where the C library has no such symbol or native access is refused. */
    private static final Optional<MethodHandle> CLOCK_GETTIME = lookUp();

    private ProcessCpuClock() {
    }

    private static Optional<MethodHandle> lookUp() {
        try {
            Linker linker = Linker.nativeLinker();
            return linker.defaultLookup().find("clock_gettime").map(f -> linker.downcallHandle(f,
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS)));
        } catch (RuntimeException e) { // IllegalCallerException: native access not enabled for this code
            LoggerFactory.getLogger(ProcessCpuClock.class).warn("gpudirect: no clock_gettime through the FFM API, "
                    + "CPU time is counted in clock ticks", e);
            return Optional.empty();
        }
    }

    /** CPU time of every thread of the process so far, in nanoseconds; in clock ticks where the call is refused. */
    static long nanos() {
        if (CLOCK_GETTIME.isEmpty()) {
            return ProcessHandle.current().info().totalCpuDuration().map(d -> d.toNanos()).orElse(0L);
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ts = arena.allocate(ValueLayout.JAVA_LONG, 2); // struct timespec { tv_sec; tv_nsec; }
            int rc = (int) CLOCK_GETTIME.get().invokeExact(CLOCK_PROCESS_CPUTIME_ID, ts);
            if (rc != 0) {
                throw new IllegalStateException("clock_gettime(CLOCK_PROCESS_CPUTIME_ID) returned " + rc);
            }
            return ts.getAtIndex(ValueLayout.JAVA_LONG, 0) * 1_000_000_000L + ts.getAtIndex(ValueLayout.JAVA_LONG, 1);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException("clock_gettime", t);
        }
    }
}
