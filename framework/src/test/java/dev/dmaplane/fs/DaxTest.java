package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.PinFlags;
import dev.dmaplane.mm.PinnedPages;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.mm.VmaBacking;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * fsdax: no page cache, a mapping reaches the file's storage directly ({@code Documentation/filesystems/dax.rst});
 * {@code check_vma_flags} in {@code mm/gup.c} refuses {@code FOLL_LONGTERM} on {@code vma_is_fsdax} VMAs with
 * {@code EOPNOTSUPP}, because a DAX mapping is the file's blocks and truncate or hole punch must wait until no
 * DMA uses them ({@code dax_layout_busy_page} in {@code fs/dax.c}; the {@code FOLL_LONGTERM} section of
 * {@code Documentation/core-api/pin_user_pages.rst}).
 */
class DaxTest {
    private static final int PAGE = (int) HostMemory.PAGE_SIZE;
    private final HostMemory mem = new HostMemory(64L << 20);
    private final Tracer tracer = new Tracer();
    private final MemFs pmem = new MemFs(mem, tracer, "pmem0", true);

    @AfterEach
    void tearDown() {
        mem.close();
    }

    @Test
    void fileDataIsTheMappedFrameWithNoPageCache() {
        Inode f = pmem.create("/f");
        f.write(0, MemorySegment.ofArray(new byte[]{5, 6, 7}));
        assertEquals(0, f.cachedPages());
        assertEquals(1, f.storedPages());
        long block = f.frameOf(0).orElseThrow();
        try (AddressSpace as = new AddressSpace(mem, tracer, "p")) {
            long va = as.mmapFile(f, 0, PAGE, Prot.PROT_READ | Prot.PROT_WRITE, true);
            assertInstanceOf(VmaBacking.Dax.class, as.vmas().getFirst().backing());
            as.write(va + 1, MemorySegment.ofArray(new byte[]{66}));
            assertEquals(block << HostMemory.PAGE_SHIFT, as.physAddr(va).orElseThrow(), "mapped directly");
            assertEquals(66, mem.frame(block).get(ValueLayout.JAVA_BYTE, 1), "the store reached the medium");
            byte[] b = new byte[3];
            f.read(0, MemorySegment.ofArray(b));
            assertEquals(66, b[1]);
            assertEquals(0, f.writeback(), "no page cache to write back");
        }
    }

    @Test
    void longTermPinIsRefusedAndNothingIsPinned() {
        Inode f = pmem.create("/f");
        f.truncate(4 * PAGE);
        try (AddressSpace as = new AddressSpace(mem, tracer, "p")) {
            long va = as.mmapFile(f, 0, 4 * PAGE, Prot.PROT_READ | Prot.PROT_WRITE, true);
            for (Set<PinFlags> flags : List.of(EnumSet.of(PinFlags.LONGTERM),
                    EnumSet.of(PinFlags.LONGTERM, PinFlags.WRITE))) {
                ErrnoException e = assertThrows(ErrnoException.class, () -> as.pin(va, 4 * PAGE, flags));
                assertEquals(Errno.EOPNOTSUPP, e.errno());
                assertTrue(e.getMessage().contains("fsdax"));
            }
            assertEquals(0, as.pinnedPages());
            assertEquals(0, as.residentPages(), "refused before faulting anything in");
            // a short-term pin is fine
            try (PinnedPages p = as.pin(va, 4 * PAGE, EnumSet.of(PinFlags.WRITE))) {
                assertEquals(4, p.pageCount());
                assertEquals(1, mem.pinCount(f.frameOf(3).orElseThrow()));
            }
        }
    }

    @Test
    void truncateOfPinnedDaxBlockIsRefusedAndChangesNothing() {
        Inode f = pmem.create("/f");
        f.write(0, MemorySegment.ofArray(new byte[2 * PAGE]));
        try (AddressSpace as = new AddressSpace(mem, tracer, "p")) {
            long va = as.mmapFile(f, 0, 2 * PAGE, Prot.PROT_READ | Prot.PROT_WRITE, true);
            PinnedPages p = as.pin(va + PAGE, PAGE, EnumSet.of(PinFlags.WRITE));
            ErrnoException e = assertThrows(ErrnoException.class, () -> f.truncate(PAGE));
            assertEquals(Errno.EBUSY, e.errno());
            assertEquals(2 * PAGE, f.size());
            assertEquals(2, f.storedPages());
            p.unpin();
            f.truncate(PAGE);
            assertEquals(1, f.storedPages());
            assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                    () -> as.read(va + PAGE, MemorySegment.ofArray(new byte[1]))).errno());
        }
    }

    @Test
    void unmountFreesDaxBlocks() {
        long before = mem.allocatedFrames();
        Inode f = pmem.create("/f");
        f.write(0, MemorySegment.ofArray(new byte[3 * PAGE]));
        assertEquals(before + 3, mem.allocatedFrames());
        pmem.close();
        assertEquals(before, mem.allocatedFrames());
    }
}
