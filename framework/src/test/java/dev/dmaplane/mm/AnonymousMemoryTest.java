package dev.dmaplane.mm;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.testing.ProcessMm;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.mm.Prot.PROT_NONE;
import static dev.dmaplane.mm.Prot.PROT_READ;
import static dev.dmaplane.mm.Prot.PROT_WRITE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Anonymous memory and VMA layout: {@code do_anonymous_page} in {@code mm/memory.c} gives a zeroed page on first
 * touch; {@code mmap(2)} / {@code munmap(2)} / {@code mprotect(2)} argument rules and VMA splitting follow
 * {@code mm/mmap.c} and {@code mm/vma.c} ({@code do_vmi_munmap}, {@code split_vma}); an access against the VMA's
 * protection is refused as {@code access_process_vm} / GUP refuse it, with {@code EFAULT} ({@code check_vma_flags}
 * in {@code mm/gup.c}).
 */
class AnonymousMemoryTest extends ProcessMm {
    @Test
    void firstTouchIsZeroFilledOneFramePerPageAndReadsBack() {
        long frames = mem.allocatedFrames();
        long va = as.mmapAnonymous(8 * PAGE, PROT_READ | PROT_WRITE);
        assertEquals(0, va % PAGE);
        assertEquals(0, as.residentPages(), "nothing is allocated before the first touch");
        assertEquals(frames, mem.allocatedFrames());

        byte[] zeros = new byte[3 * PAGE];
        as.read(va + PAGE, MemorySegment.ofArray(zeros));
        assertArrayEquals(new byte[3 * PAGE], zeros);
        assertEquals(3, as.residentPages());
        assertEquals(frames + 3, mem.allocatedFrames());

        byte[] data = new byte[PAGE + 100];
        Arrays.fill(data, (byte) 0x5a);
        as.write(va + PAGE - 50, MemorySegment.ofArray(data));
        byte[] back = new byte[data.length];
        as.read(va + PAGE - 50, MemorySegment.ofArray(back));
        assertArrayEquals(data, back);
        assertEquals(4, as.residentPages(), "page 0 was touched by the store");
        assertEquals(frames + 4, mem.allocatedFrames());
    }

    @Test
    void unmappedAndProtectedAccessesFailWithEfaultAndChangeNothing() {
        long va = as.mmapAnonymous(2 * PAGE, PROT_READ);
        ErrnoException store = assertThrows(ErrnoException.class,
                () -> as.write(va, MemorySegment.ofArray(new byte[1])));
        assertEquals(Errno.EFAULT, store.errno());
        assertTrue(store.getMessage().contains("r--"), store.getMessage());
        assertEquals(0, as.residentPages());

        ErrnoException past = assertThrows(ErrnoException.class,
                () -> as.read(va + PAGE, MemorySegment.ofArray(new byte[2 * PAGE])));
        assertEquals(Errno.EFAULT, past.errno());
        assertTrue(past.getMessage().contains(Long.toHexString(va + 2 * PAGE)), past.getMessage());
        assertEquals(0, as.residentPages(), "the readable part was not faulted in either");

        long none = as.mmapAnonymous(PAGE, PROT_NONE);
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> as.read(none, MemorySegment.ofArray(new byte[1]))).errno());
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> as.read(AddressSpace.TASK_SIZE, MemorySegment.ofArray(new byte[1]))).errno());
    }

    @Test
    void munmapSplitsAVmaAndFreesOnlyTheHole() {
        long frames = mem.allocatedFrames();
        long va = as.mmapAnonymous(4 * PAGE, PROT_READ | PROT_WRITE);
        as.write(va, MemorySegment.ofArray(new byte[4 * PAGE]));
        assertEquals(frames + 4, mem.allocatedFrames());
        as.munmap(va + PAGE, 2 * PAGE);
        List<Vma> vmas = as.vmas();
        assertEquals(2, vmas.size());
        assertEquals(va, vmas.get(0).start());
        assertEquals(va + PAGE, vmas.get(0).end());
        assertEquals(va + 3 * PAGE, vmas.get(1).start());
        assertEquals(va + 4 * PAGE, vmas.get(1).end());
        assertInstanceOf(VmaBacking.Anonymous.class, vmas.get(1).backing());
        assertEquals(2, as.residentPages());
        assertEquals(frames + 2, mem.allocatedFrames());
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> as.read(va + PAGE, MemorySegment.ofArray(new byte[1]))).errno());
        as.munmap(va + PAGE, 2 * PAGE);   // a hole: not an error
        as.munmap(va, 4 * PAGE);
        assertTrue(as.vmas().isEmpty());
        assertEquals(frames, mem.allocatedFrames());
    }

    @Test
    void mprotectSplitsAndGuardsStores() {
        long va = as.mmapAnonymous(3 * PAGE, PROT_READ | PROT_WRITE);
        as.mprotect(va + PAGE, PAGE, PROT_READ);
        List<Vma> vmas = as.vmas();
        assertEquals(3, vmas.size());
        assertEquals(PROT_READ, vmas.get(1).prot());
        assertEquals(PROT_READ | PROT_WRITE, vmas.get(2).prot());
        assertTrue(vmas.get(1).toString().contains(" r--p "), vmas.get(1).toString());
        as.write(va, MemorySegment.ofArray(new byte[PAGE]));
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> as.write(va + PAGE, MemorySegment.ofArray(new byte[1]))).errno());
        ErrnoException hole = assertThrows(ErrnoException.class, () -> as.mprotect(va, 5 * PAGE, PROT_NONE));
        assertEquals(Errno.ENOMEM, hole.errno());
        assertEquals(3, as.vmas().size(), "a refused mprotect changes nothing");
        assertEquals(PROT_READ | PROT_WRITE, as.vmas().getFirst().prot());
    }

    @Test
    void fixedMappingReplacesWhatWasThere() {
        long va = as.mmapAnonymous(4 * PAGE, PROT_READ | PROT_WRITE);
        as.write(va + PAGE, MemorySegment.ofArray(new byte[]{9}));
        long frames = mem.allocatedFrames();
        assertEquals(va + PAGE, as.mmapAnonymousFixed(va + PAGE, PAGE, PROT_READ | PROT_WRITE));
        assertEquals(3, as.vmas().size());
        assertEquals(frames - 1, mem.allocatedFrames(), "the old page went");
        byte[] b = new byte[1];
        as.read(va + PAGE, MemorySegment.ofArray(b));
        assertEquals(0, b[0], "the new mapping starts zeroed");
    }

    @Test
    void badLayoutArgumentsAreRefusedWithTheKernelsErrnos() {
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> as.mmapAnonymous(0, PROT_READ)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> as.mmapAnonymous(PAGE, 0x40)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> as.mmapAnonymousFixed(0x100001, PAGE, PROT_READ)).errno());
        assertEquals(Errno.EPERM, assertThrows(ErrnoException.class,
                () -> as.mmapAnonymousFixed(0x1000, PAGE, PROT_READ)).errno());
        assertEquals(Errno.ENOMEM, assertThrows(ErrnoException.class,
                () -> as.mmapAnonymousFixed(AddressSpace.TASK_SIZE - PAGE, 2 * PAGE, PROT_READ)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> as.munmap(0x10001, PAGE)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> as.munmap(0x10000, 0)).errno());
        assertTrue(as.vmas().isEmpty());
    }

    @Test
    void mappingsArePlacedTopDownWithoutOverlap() {
        long a = as.mmapAnonymous(PAGE, PROT_READ);
        long b = as.mmapAnonymous(3 * PAGE, PROT_READ);
        long c = as.mmapAnonymous(PAGE, PROT_READ);
        assertTrue(b + 3 * PAGE <= a && c + PAGE <= b, "top-down");
        as.munmap(b, 3 * PAGE);
        long d = as.mmapAnonymous(2 * PAGE, PROT_READ);
        assertEquals(a - 2 * PAGE, d, "the highest gap that fits");
        assertNotEquals(c, d);
    }

    @Test
    void closedAddressSpaceRefusesEverything() {
        long va = as.mmapAnonymous(PAGE, PROT_READ);
        as.close();
        assertTrue(as.isClosed());
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> as.read(va, MemorySegment.ofArray(new byte[1]))).errno());
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> as.mmapAnonymous(PAGE, PROT_READ)).errno());
        as.close();
    }
}
