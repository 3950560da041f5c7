package dev.dmaplane.accel.sync;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvFence;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * sync_file ({@code drivers/dma-buf/sync_file.c}: merge, SYNC_IOC_FILE_INFO status) and the dma-buf sync-file ioctls
 * ({@code drivers/dma-buf/dma-buf.c} {@code dma_buf_export_sync_file} / {@code dma_buf_import_sync_file}).
 */
class SyncFileTest {
    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final DmaBuf buf = new SystemHeap(DmaBufs.of(machine)).allocate(4096);
    private final FenceContext writers = FenceContext.allocate("test", "writer");
    private final FenceContext readers = FenceContext.allocate("test", "reader");

    @AfterEach
    void close() {
        buf.put();
        machine.close();
    }

    private static Errno errno(Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    /** sync_file_merge: one fence per context (the later), signalled ones dropped; status 0, then 1, or -errno. */
    @Test
    void mergeStatusAndInfo() {
        Fence w1 = writers.createFence();
        Fence w2 = writers.createFence();
        Fence r1 = readers.createFence();
        SyncFile merged = SyncFile.merge("m", SyncFile.merge("a", SyncFile.create(w1), SyncFile.create(r1)),
                SyncFile.create(w2));
        assertEquals(Set.of(w2, r1), Set.copyOf(merged.fences()));
        assertEquals(0, merged.status());
        w2.signal();
        r1.setError(Errno.EIO);
        r1.signal();
        assertEquals(-Errno.EIO.number(), merged.status());
        SyncFileInfo info = merged.info();
        assertEquals("m", info.name());
        assertEquals(2, info.fences().size());
        assertEquals(Set.of(1, -Errno.EIO.number()),
                info.fences().stream().map(SyncFenceInfo::status).collect(Collectors.toSet()));
        assertEquals(Errno.EINVAL, errno(() -> SyncFile.create(null)));
        SyncFile done = SyncFile.merge("d", SyncFile.create(w1), SyncFile.create(w2));
        assertEquals(0, done.status(), "w1 still pending");
        w1.signal();
        assertEquals(1, SyncFile.merge("s", SyncFile.create(w1), SyncFile.create(w2)).status(),
                "all signalled: a signalled stub");
    }

    /**
     * dma_buf_export_sync_file: WRITE gives the fences a writer waits for (readers and writers), READ those a reader
     * waits for (writers only), a signalled stub when none; flags outside DMA_BUF_SYNC_RW or with neither bit: EINVAL.
     */
    @Test
    void exportGivesTheFencesTheAccessWaitsFor() {
        assertEquals(1, SyncFile.exportFromDmaBuf(buf, SyncFile.DMA_BUF_SYNC_RW).status());
        Fence w = writers.createFence();
        Fence r = readers.createFence();
        Reservation resv = buf.resv();
        resv.lock();
        resv.reserveFences(2);
        resv.addFence(w, ResvUsage.WRITE);
        resv.addFence(r, ResvUsage.READ);
        resv.unlock();
        assertEquals(List.of(w), SyncFile.exportFromDmaBuf(buf, SyncFile.DMA_BUF_SYNC_READ).fences());
        assertEquals(Set.of(w, r), Set.copyOf(SyncFile.exportFromDmaBuf(buf, SyncFile.DMA_BUF_SYNC_WRITE).fences()));
        assertEquals(Set.of(w, r), Set.copyOf(SyncFile.exportFromDmaBuf(buf, SyncFile.DMA_BUF_SYNC_RW).fences()));
        assertEquals(Errno.EINVAL, errno(() -> SyncFile.exportFromDmaBuf(buf, 0)));
        assertEquals(Errno.EINVAL, errno(() -> SyncFile.exportFromDmaBuf(buf, 4)));
        w.signal();
        r.signal();
    }

    /** dma_buf_import_sync_file: WRITE adds at WRITE usage, READ at READ usage, a merged file's fences one by one. */
    @Test
    void importAddsAtTheUsageTheFlagsName() {
        Fence w = writers.createFence();
        Fence r1 = readers.createFence();
        FenceContext other = FenceContext.allocate("test", "other");
        Fence r2 = other.createFence();
        SyncFile.importIntoDmaBuf(buf, SyncFile.create(w), SyncFile.DMA_BUF_SYNC_RW);
        SyncFile.importIntoDmaBuf(buf, SyncFile.merge("rr", SyncFile.create(r1), SyncFile.create(r2)),
                SyncFile.DMA_BUF_SYNC_READ);
        List<ResvFence> entries = buf.resv().entries();
        assertTrue(entries.contains(new ResvFence(w, ResvUsage.WRITE)));
        assertTrue(entries.contains(new ResvFence(r1, ResvUsage.READ)));
        assertTrue(entries.contains(new ResvFence(r2, ResvUsage.READ)));
        assertEquals(List.of(w), buf.resv().fences(ResvUsage.WRITE));
        assertEquals(Errno.EINVAL, errno(() -> SyncFile.importIntoDmaBuf(buf, SyncFile.create(w), 0)));
        assertEquals(Errno.EINVAL, errno(() -> SyncFile.importIntoDmaBuf(buf, SyncFile.create(w), 8)));
        assertSame(false, buf.resv().isLocked());
        w.signal();
        r1.signal();
        r2.signal();
    }
}
