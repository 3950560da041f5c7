package dev.dmaplane.mm;

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
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;

import static dev.dmaplane.mm.Prot.PROT_READ;
import static dev.dmaplane.mm.Prot.PROT_WRITE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Migration of anonymous pages ({@code mm/migrate.c}, {@code Documentation/mm/page_migration.rst}): the contents
 * move to a new frame and the old frame is freed; a folio with references beyond its mappings, in particular
 * a maybe-DMA-pinned one ({@code folio_maybe_dma_pinned}, {@code Documentation/core-api/pin_user_pages.rst}),
 * cannot migrate; interval notifiers see the move ({@code MMU_NOTIFY_MIGRATE}).
 */
class MigrationTest extends ProcessMm {
    @Test
    void migrateMovesTheBytesAndFreesTheOldFrame() {
        long va = as.mmapAnonymous(2 * PAGE, PROT_READ | PROT_WRITE);
        byte[] data = new byte[PAGE];
        for (int i = 0; i < PAGE; i++) {
            data[i] = (byte) (i ^ 0x3c);
        }
        as.write(va, MemorySegment.ofArray(data));
        long oldPhys = as.physAddr(va).orElseThrow();
        long frames = mem.allocatedFrames();

        long newPhys = as.migrate(va + 5);

        assertEquals(newPhys, as.physAddr(va + 5).orElseThrow());
        assertNotEquals(oldPhys, newPhys - 5);
        assertFalse(mem.isAllocated(oldPhys >>> HostMemory.PAGE_SHIFT));
        assertEquals(frames, mem.allocatedFrames());
        byte[] back = new byte[PAGE];
        as.read(va, MemorySegment.ofArray(back));
        assertArrayEquals(data, back);
        List<TraceEvent> migrations = tracer.select(e -> e.kind() == TraceKind.MIGRATE);
        assertEquals(1, migrations.size());
        assertEquals(va, migrations.getFirst().address());
    }

    @Test
    void pinnedPageIsEbusyAndStaysPut() {
        long va = as.mmapAnonymous(PAGE, PROT_READ | PROT_WRITE);
        List<InvalidateReason> reasons = new CopyOnWriteArrayList<>();
        as.registerNotifier(va, PAGE, (range, reason, seq) -> reasons.add(reason));
        try (PinnedPages pin = as.pin(va, PAGE, Set.of(PinFlags.WRITE))) {
            long phys = pin.physAddrs()[0];
            ErrnoException e = assertThrows(ErrnoException.class, () -> as.migrate(va));
            assertEquals(Errno.EBUSY, e.errno());
            assertTrue(e.getMessage().contains("pinned"), e.getMessage());
            assertEquals(phys, as.physAddr(va).orElseThrow());
            assertTrue(reasons.isEmpty(), "a refused migration tells no one");
        }
        as.migrate(va);
        assertEquals(List.of(InvalidateReason.MIGRATE), reasons);
    }

    @Test
    void onlyPresentAnonymousPagesMigrate() {
        long va = as.mmapAnonymous(PAGE, PROT_READ);
        assertEquals(Errno.ENOENT, assertThrows(ErrnoException.class, () -> as.migrate(va)).errno());
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class, () -> as.migrate(va + PAGE)).errno());
        MemFs fs = new MemFs(mem, tracer, "memfs0", false);
        Inode f = fs.create("/f");
        f.truncate(PAGE);
        long file = as.mmapFile(f, 0, PAGE, PROT_READ | PROT_WRITE, false);
        as.read(file, MemorySegment.ofArray(new byte[1]));
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> as.migrate(file)).errno());
        as.write(file, MemorySegment.ofArray(new byte[]{1}));
        as.migrate(file);   // now a private COW copy: anonymous
    }
}
