package dev.dmaplane.mm;

import dev.dmaplane.dma.SgTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.fs.MemFs;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.testing.ProcessMm;
import dev.dmaplane.trace.TraceEvent;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

import static dev.dmaplane.mm.Prot.PROT_READ;
import static dev.dmaplane.mm.Prot.PROT_WRITE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code pin_user_pages} as {@code Documentation/core-api/pin_user_pages.rst} and {@code mm/gup.c} define it:
 * every frame gets a pin count and a reference ({@code FOLL_PIN}); {@code check_vma_flags} refuses
 * {@code FOLL_WRITE} on a VMA without {@code VM_WRITE} with {@code EFAULT}, {@code FOLL_LONGTERM} on fsdax with
 * {@code EOPNOTSUPP}, and {@code FOLL_LONGTERM|FOLL_WRITE} on a shared file mapping that needs dirty tracking
 * with {@code EFAULT} ({@code writable_file_mapping_allowed}, {@code vma_needs_dirty_tracking} in
 * {@code mm/mmap.c}); a read-only long-term pin of a private file mapping breaks COW first
 * ({@code gup_must_unshare} in {@code mm/internal.h}).
 */
class PinTest extends ProcessMm {
    private static long pfn(long phys) {
        return phys >>> HostMemory.PAGE_SHIFT;
    }

    @Test
    void pinFaultsInAndPinsEveryFrameUntilUnpin() {
        long va = as.mmapAnonymous(4 * PAGE, PROT_READ | PROT_WRITE);
        PinnedPages p = as.pin(va + 100, 3 * PAGE, EnumSet.of(PinFlags.WRITE));
        assertEquals(4, p.pageCount(), "3 pages from offset 100 touch 4 pages");
        assertEquals(100, p.offset());
        assertEquals(3 * PAGE, p.length());
        assertEquals(4, as.residentPages());
        assertEquals(4, as.pinnedPages());
        long[] phys = p.physAddrs();
        for (int i = 0; i < 4; i++) {
            assertEquals(0, phys[i] % PAGE);
            assertEquals(as.physAddr(va + (long) i * PAGE).orElseThrow(), phys[i]);
            assertEquals(1, mem.pinCount(pfn(phys[i])));
            assertEquals(2, mem.refCount(pfn(phys[i])), "mapping + pin");
        }
        SgTable sg = p.toSgTable();
        assertEquals(3 * PAGE, sg.length());
        assertEquals(phys[0] + 100, sg.entries().getFirst().physAddr());

        p.unpin();
        assertFalse(p.isPinned());
        assertEquals(0, as.pinnedPages());
        for (long pa : phys) {
            assertEquals(0, mem.pinCount(pfn(pa)));
            assertEquals(1, mem.refCount(pfn(pa)));
        }
        List<TraceEvent> events = tracer.select(e -> e.kind() == TraceKind.PIN || e.kind() == TraceKind.UNPIN);
        assertEquals(List.of(TraceKind.PIN, TraceKind.UNPIN), events.stream().map(TraceEvent::kind).toList());
        assertEquals(va + 100, events.getFirst().address());
        assertEquals("proc1", events.getFirst().device());
    }

    @Test
    void secondUnpinIsRefusedButCloseIsANoOp() {
        long va = as.mmapAnonymous(PAGE, PROT_READ);
        PinnedPages p = as.pin(va, PAGE, Set.of());
        long pa = p.physAddrs()[0];
        p.unpin();
        ErrnoException twice = assertThrows(ErrnoException.class, p::unpin);
        assertEquals(Errno.EINVAL, twice.errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, p::unpinDirty).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, p::toSgTable).errno());
        assertDoesNotThrow(p::close);
        assertEquals(0, mem.pinCount(pfn(pa)));
        assertEquals(1, mem.refCount(pfn(pa)), "the mapping's reference was not dropped twice");

        try (PinnedPages q = as.pin(va, PAGE, Set.of())) {
            assertEquals(1, mem.pinCount(pfn(q.physAddrs()[0])));
        }
        assertEquals(0, mem.pinCount(pfn(pa)));
    }

    @Test
    void partialFailureLeavesNothingPinned() {
        long a = as.mmapAnonymous(4 * PAGE, PROT_READ | PROT_WRITE);
        as.munmap(a + 2 * PAGE, PAGE);                      // a hole in the middle
        as.write(a, MemorySegment.ofArray(new byte[2 * PAGE]));
        long[] before = {as.physAddr(a).orElseThrow(), as.physAddr(a + PAGE).orElseThrow()};
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> as.pin(a, 4 * PAGE, EnumSet.of(PinFlags.LONGTERM)));
        assertEquals(Errno.EFAULT, e.errno());
        assertTrue(e.getMessage().contains(Long.toHexString(a + 2 * PAGE)), e.getMessage());
        assertEquals(0, as.pinnedPages());
        for (long pa : before) {
            assertEquals(0, mem.pinCount(pfn(pa)));
        }
    }

    @Test
    void failureAfterSomePagesWerePinnedUnpinsThem() {
        // host memory of one 2 MiB section: the pin runs out of frames half way and must undo its pins
        try (HostMemory small = new HostMemory(2L << 20); AddressSpace p = new AddressSpace(small, tracer, "p")) {
            long va = p.mmapAnonymous(600L * PAGE, PROT_READ | PROT_WRITE);
            p.write(va, MemorySegment.ofArray(new byte[8 * PAGE]));
            long first = pfn(p.physAddr(va).orElseThrow());
            ErrnoException e = assertThrows(ErrnoException.class, () -> p.pin(va, 600L * PAGE, Set.of()));
            assertEquals(Errno.ENOMEM, e.errno());
            assertEquals(0, p.pinnedPages());
            assertEquals(0, small.pinCount(first));
            for (long i = 0; i < 512; i++) {
                assertEquals(0, small.pinCount(i), "frame " + i);
            }
        }
    }

    @Test
    void writePinOfReadOnlyVmaIsEfault() {
        long va = as.mmapAnonymous(2 * PAGE, PROT_READ);
        ErrnoException e = assertThrows(ErrnoException.class, () -> as.pin(va, 2 * PAGE, EnumSet.of(PinFlags.WRITE)));
        assertEquals(Errno.EFAULT, e.errno());
        assertTrue(e.getMessage().contains("FOLL_WRITE"), e.getMessage());
        assertEquals(0, as.pinnedPages());
        assertEquals(0, as.residentPages(), "refused before any fault");
        try (PinnedPages ro = as.pin(va, 2 * PAGE, EnumSet.of(PinFlags.LONGTERM))) {
            assertEquals(2, ro.pageCount());
        }
        long none = as.mmapAnonymous(PAGE, Prot.PROT_NONE);
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class, () -> as.pin(none, PAGE, Set.of())).errno());
    }

    @Test
    void badPinArguments() {
        long va = as.mmapAnonymous(PAGE, PROT_READ);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> as.pin(va, 0, Set.of())).errno());
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class, () -> as.pin(-4096, PAGE, Set.of())).errno());
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> as.pin(AddressSpace.TASK_SIZE - 1, 2, Set.of())).errno());
        assertEquals(0, as.pinnedPages());
    }

    @Test
    void longTermWritePinOfSharedFileMappingFollowsWritableFileMappingAllowed() {
        MemFs fs = new MemFs(mem, tracer, "memfs0", false);
        Inode f = fs.create("/f");
        f.truncate(2 * PAGE);
        long shared = as.mmapFile(f, 0, 2 * PAGE, PROT_READ | PROT_WRITE, true);
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> as.pin(shared, 2 * PAGE, EnumSet.of(PinFlags.LONGTERM, PinFlags.WRITE)));
        assertEquals(Errno.EFAULT, e.errno());
        assertTrue(e.getMessage().contains("writable_file_mapping_allowed"), e.getMessage());
        assertEquals(0, as.pinnedPages());
        // short-term write pins and long-term read pins of the same mapping are allowed
        as.pin(shared, 2 * PAGE, EnumSet.of(PinFlags.WRITE)).unpin();
        as.pin(shared, 2 * PAGE, EnumSet.of(PinFlags.LONGTERM)).unpin();
        // a private mapping needs no dirty tracking: the pin gets private copies
        long priv = as.mmapFile(f, 0, 2 * PAGE, PROT_READ | PROT_WRITE, false);
        try (PinnedPages p = as.pin(priv, 2 * PAGE, EnumSet.of(PinFlags.LONGTERM, PinFlags.WRITE))) {
            assertNotEquals(f.frameOf(0).orElseThrow(), pfn(p.physAddrs()[0]), "COW broken for the pin");
        }
    }

    @Test
    void readOnlyLongTermPinOfPrivateFileMappingUnsharesFirst() {
        MemFs fs = new MemFs(mem, tracer, "memfs0", false);
        Inode f = fs.create("/f");
        f.write(0, MemorySegment.ofArray(new byte[]{1, 2, 3}));
        long priv = as.mmapFile(f, 0, PAGE, PROT_READ | PROT_WRITE, false);
        long cachePfn = f.frameOf(0).orElseThrow();
        try (PinnedPages shortTerm = as.pin(priv, PAGE, Set.of())) {
            assertEquals(cachePfn, pfn(shortTerm.physAddrs()[0]), "a short-term R/O pin takes the cached page");
        }
        try (PinnedPages longTerm = as.pin(priv, PAGE, EnumSet.of(PinFlags.LONGTERM))) {
            long pinned = pfn(longTerm.physAddrs()[0]);
            assertNotEquals(cachePfn, pinned, "gup_must_unshare broke COW");
            as.write(priv, MemorySegment.ofArray(new byte[]{42}));
            byte[] seen = new byte[1];
            mem.read(longTerm.physAddrs()[0], MemorySegment.ofArray(seen));
            assertEquals(42, seen[0], "the device sees the process's later stores");
        }
    }

    @Test
    void munmapOfPinnedRangeKeepsFramesUntilUnpin() {
        long frames = mem.allocatedFrames();
        long va = as.mmapAnonymous(2 * PAGE, PROT_READ | PROT_WRITE);
        as.write(va, MemorySegment.ofArray(new byte[]{1, 2, 3, 4}));
        PinnedPages p = as.pin(va, 2 * PAGE, EnumSet.of(PinFlags.WRITE, PinFlags.LONGTERM));
        long[] phys = p.physAddrs();
        as.munmap(va, 2 * PAGE);
        assertTrue(as.vmas().isEmpty());
        assertEquals(0, as.residentPages());
        assertEquals(frames + 2, mem.allocatedFrames(), "pinned frames outlive the mapping");
        byte[] b = new byte[4];
        mem.read(phys[0], MemorySegment.ofArray(b));
        assertArrayEquals(new byte[]{1, 2, 3, 4}, b);
        assertEquals(2, as.pinnedPages());
        p.unpin();
        assertEquals(frames, mem.allocatedFrames());
        assertFalse(mem.isAllocated(pfn(phys[0])));
    }

    @Test
    void pinSpansSeveralVmas() {
        long va = as.mmapAnonymous(4 * PAGE, PROT_READ | PROT_WRITE);
        as.mprotect(va + 2 * PAGE, 2 * PAGE, PROT_READ);
        try (PinnedPages p = as.pin(va, 4 * PAGE, Set.of())) {
            assertEquals(4, p.pageCount());
        }
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> as.pin(va, 4 * PAGE, EnumSet.of(PinFlags.WRITE))).errno());
        assertEquals(0, as.pinnedPages());
    }

    @Test
    void closeFreesEveryFrameExceptPinnedOnes() {
        long start = mem.allocatedFrames();
        MemFs fs = new MemFs(mem, tracer, "memfs0", false);
        Inode f = fs.create("/f");
        f.write(0, MemorySegment.ofArray(new byte[2 * PAGE]));
        long withFile = mem.allocatedFrames();
        long anon = as.mmapAnonymous(16 * PAGE, PROT_READ | PROT_WRITE);
        as.write(anon, MemorySegment.ofArray(new byte[16 * PAGE]));
        long file = as.mmapFile(f, 0, 2 * PAGE, PROT_READ | PROT_WRITE, false);
        as.write(file, MemorySegment.ofArray(new byte[]{1}));             // one COW copy
        as.read(file + PAGE, MemorySegment.ofArray(new byte[1]));         // one cache page mapped
        PinnedPages pinned = as.pin(anon + 3 * PAGE, 2 * PAGE, Set.of());
        assertEquals(withFile + 16 + 1, mem.allocatedFrames());

        as.close();
        assertEquals(0, as.residentPages());
        assertEquals(withFile + 2, mem.allocatedFrames(), "only the two pinned anonymous frames remain");
        assertEquals(0, f.mapperCount());
        pinned.unpin();
        assertEquals(withFile, mem.allocatedFrames());
        fs.close();
        assertEquals(start, mem.allocatedFrames());
    }
}
