package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** {@code perf bench} tells, on stderr, which of its parts runs and what it measures while the figures go to stdout. */
class BenchTest {
    @Test
    void eachPartIsAnnouncedWithItsPlaceAndWhatItMeasures() {
        assertEquals("bench: part 1 of 3, bw: 1 MiB RDMA WRITE bandwidth, then MemorySegment.copy of 1 MiB",
                Bench.progress(0, "bw"));
        assertEquals("bench: part 2 of 3, rate: 64 B RDMA WRITE message rate with 1024-WR post lists",
                Bench.progress(1, "rate"));
        assertEquals("bench: part 3 of 3, lat: 8 B write_lat, then a two-thread ping-pong", Bench.progress(2, "lat"));
        ErrnoException e = assertThrows(ErrnoException.class, () -> Bench.progress(0, "disk"));
        assertEquals(Errno.EINVAL, e.errno());
        assertEquals("EINVAL: unknown bench part 'disk': one of [bw, rate, lat]", e.getMessage());
    }
}
