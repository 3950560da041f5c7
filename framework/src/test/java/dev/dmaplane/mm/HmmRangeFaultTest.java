package dev.dmaplane.mm;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.testing.ProcessMm;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.mm.Prot.PROT_READ;
import static dev.dmaplane.mm.Prot.PROT_WRITE;
import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code hmm_range_fault} as {@code Documentation/mm/hmm.rst} describes it for device mirrors (ODP): pages are
 * faulted in like CPU accesses, no pin and no reference is taken, and the returned addresses are only as good as
 * the interval subscription's sequence number ({@code mmu_interval_read_begin}/{@code read_retry}).
 */
class HmmRangeFaultTest extends ProcessMm {
    private static final long PAGE = HostMemory.PAGE_SIZE;

    HmmRangeFaultTest() {
        super("odp");
    }

    @Test
    void faultsPagesInWithoutPinningAndMatchesPagemap() {
        long a = as.mmapAnonymous(8 * PAGE, PROT_READ | PROT_WRITE);
        long pinsBefore = mem.pinsAcquired();
        long[] phys = as.faultRange(a + 100, 3 * PAGE, true);
        assertEquals(4, phys.length, "an unaligned range of 3 pages touches 4");
        assertEquals(4, as.residentPages());
        assertEquals(pinsBefore, mem.pinsAcquired(), "no FOLL_PIN");
        for (int i = 0; i < phys.length; i++) {
            assertEquals(as.physAddr(a + i * PAGE).orElseThrow(), phys[i]);
            assertEquals(1, mem.refCount(phys[i] >>> HostMemory.PAGE_SHIFT), "only the page table holds the frame");
        }
        mem.slice(phys[1], 8).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0x1122334455667788L);
        MemorySegment back = MemorySegment.ofArray(new byte[8]);
        as.read(a + PAGE, back);
        assertEquals(0x1122334455667788L, back.get(ValueLayout.JAVA_LONG_UNALIGNED, 0), "the CPU sees what the device wrote");
    }

    @Test
    void invalidationTellsTheMirrorTheAddressesAreStale() {
        long a = as.mmapAnonymous(4 * PAGE, PROT_READ | PROT_WRITE);
        List<InvalidateReason> seen = new ArrayList<>();
        try (IntervalSubscription sub = as.registerNotifier(a, 4 * PAGE, (range, reason, seq) -> seen.add(reason))) {
            long seq = sub.readBegin();
            as.faultRange(a, 4 * PAGE, false);
            assertFalse(sub.readRetry(seq));
            as.munmap(a, PAGE);
            assertTrue(sub.readRetry(seq));
            assertEquals(List.of(InvalidateReason.UNMAP), seen);
        }
    }

    @Test
    void refusalsAreCheckedBeforeAnythingIsFaultedIn() {
        long ro = as.mmapAnonymous(2 * PAGE, PROT_READ);
        assertEquals(Errno.EPERM, assertThrows(ErrnoException.class, () -> as.faultRange(ro, 2 * PAGE, true)).errno());
        assertEquals(0, as.residentPages());
        assertEquals(2, as.faultRange(ro, 2 * PAGE, false).length);
        long a = as.mmapAnonymous(2 * PAGE, PROT_READ | PROT_WRITE);
        as.munmap(a + PAGE, PAGE);
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class, () -> as.faultRange(a, 2 * PAGE, false)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> as.faultRange(a, 0, false)).errno());
    }
}
