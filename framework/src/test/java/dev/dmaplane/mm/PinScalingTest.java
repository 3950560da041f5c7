package dev.dmaplane.mm;

import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.util.EnumSet;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.mm.Prot.PROT_READ;
import static dev.dmaplane.mm.Prot.PROT_WRITE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Pinning cost must grow linearly with the pages pinned, as {@code __get_user_pages} walks the page table once
 * per page ({@code mm/gup.c}): a range eight times larger may take about eight times longer, never the
 * sixty-four times a quadratic structure would. (Pinning 1 GiB of faulted memory took about 12 ms here.)
 */
class PinScalingTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;

    private static long pinNanos(AddressSpace as, long va, long length) {
        long t0 = System.nanoTime();
        PinnedPages p = as.pin(va, length, EnumSet.of(PinFlags.WRITE, PinFlags.LONGTERM));
        long t = System.nanoTime() - t0;
        assertEquals(length / PAGE, p.pageCount());
        p.unpin();
        return t;
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void pinningAlreadyFaultedMemoryIsLinear() {
        try (HostMemory mem = new HostMemory(512L << 20)) {
            Tracer tracer = new Tracer();
            tracer.setEnabled(false);
            AddressSpace as = new AddressSpace(mem, tracer, "bench");
            long small = 32L << 20;
            long large = 256L << 20;
            long va = as.mmapAnonymous(large, PROT_READ | PROT_WRITE);
            byte[] chunk = new byte[(int) (1L << 20)];
            for (long off = 0; off < large; off += chunk.length) {
                as.write(va + off, MemorySegment.ofArray(chunk));
            }
            assertEquals(large / PAGE, as.residentPages());
            pinNanos(as, va, large);   // warm up
            // interleaved, best of many: other load on the machine inflates single runs, never the minimum
            long tSmall = Long.MAX_VALUE;
            long tLarge = Long.MAX_VALUE;
            for (int i = 0; i < 9; i++) {
                tSmall = Math.min(tSmall, pinNanos(as, va, small));
                tLarge = Math.min(tLarge, pinNanos(as, va, large));
            }
            double ratio = (double) tLarge / Math.max(1, tSmall);
            assertTrue(ratio < 32, "8x the pages took " + ratio + "x the time (" + tSmall + " ns vs " + tLarge
                    + " ns); a quadratic walk would take 64x");
            assertEquals(0, as.pinnedPages());
            as.close();
        }
    }
}
