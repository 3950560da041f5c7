package dev.dmaplane.rdma.impl;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.rdma.Fixture;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The translations below the key's range check ({@code rxe_mr.c}'s {@code mr_check_range} comes first, then
 * {@code rxe_mr_copy} walks the region's map; {@code umem_odp.c}'s {@code ib_umem_odp_map_dma_and_lock} faults only
 * inside the umem, returning {@code -EFAULT} otherwise): pinned, on-demand and dma-buf memory each refuse an offset
 * or length outside the region with {@code EFAULT} before any table look-up, and the on-demand one faults in no page
 * outside it.
 */
@Timeout(60)
class TranslationBoundsTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private static final long TOP = 1L << 63;
    private static final long LEN = 4 * PAGE;
    /** {offset, length} outside a region of {@link #LEN} bytes. */
    private static final long[][] OUTSIDE = {
            {TOP + 0x2000, 8},
            {TOP, 1},
            {-1, 1},
            {-PAGE, 2 * PAGE},
            {LEN, 1},
            {LEN - 8, 16},
            {0, LEN + 1},
            {0, -1},
    };

    private final Fixture f = new Fixture();
    private final ProtectionDomain pd = f.open().allocPd();

    @AfterEach
    void close() {
        f.close();
    }

    private static void assertRefused(UserMemory u) {
        for (long[] k : OUTSIDE) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> u.translate(k[0], k[1]),
                    "offset 0x" + Long.toHexString(k[0]) + " + " + k[1]);
            assertEquals(Errno.EFAULT, e.errno(), e.getMessage());
            assertTrue(e.getMessage().contains("0x" + Long.toHexString(k[0])), e.getMessage());
        }
    }

    @Test
    void pinnedMemoryRefusesOffsetsOutsideTheRegion() {
        long a = f.alloc(2 * LEN);
        MrImpl mr = (MrImpl) pd.regMr(a, LEN, Access.LOCAL_WRITE);
        assertRefused(mr.userMemory());
        assertEquals(LEN, mr.userMemory().translate(0, LEN).stream().mapToLong(s -> s.length()).sum());
    }

    /** The refusal of a fault of {@code [offset, offset + len)}; one made by mistake releases its lock and fails. */
    private static ErrnoException faultRefused(OdpUserMemory odp, MrImpl mr, long offset, long len) {
        try {
            odp.makePresent(offset, len, true, mr.rw, () -> {
            });
        } catch (ErrnoException e) {
            return e;
        }
        mr.rw.readLock().unlock();
        return fail("offset 0x" + Long.toHexString(offset) + " + " + len + " was made present");
    }

    @Test
    void onDemandMemoryRefusesOutsideOffsetsAndFaultsNothingInBeyondTheRegion() {
        long a = f.alloc(2 * LEN); // mapped beyond the region: a fault there would succeed
        MrImpl mr = (MrImpl) pd.regMr(a, LEN, Fixture.ALL_REMOTE | Access.ON_DEMAND);
        OdpUserMemory odp = (OdpUserMemory) mr.userMemory();
        long resident = f.mm.residentPages();
        for (long[] k : OUTSIDE) {
            ErrnoException e = faultRefused(odp, mr, k[0], k[1]);
            assertEquals(Errno.EFAULT, e.errno(), e.getMessage());
            assertEquals(0, mr.rw.getReadLockCount(), "no lock is held after a refusal");
        }
        assertEquals(resident, f.mm.residentPages(), "no page beyond the region was faulted in");
        assertEquals(0, odp.dmaMappings());

        odp.makePresent(LEN - PAGE, PAGE, true, mr.rw, () -> {
        });
        try {
            assertEquals(1, odp.dmaMappings(), "the region's last page, and only it");
            assertRefused(odp);
            assertEquals(PAGE, odp.translate(LEN - PAGE, PAGE).getFirst().length());
        } finally {
            mr.rw.readLock().unlock();
        }
    }

    @Test
    void dmabufMemoryRefusesOffsetsOutsideTheRegion() {
        DmaBuf buf = new SystemHeap(DmaBufs.of(f.machine)).allocate(2 * LEN);
        MrImpl mr = (MrImpl) pd.regDmabufMr(PAGE, LEN, 0x10000, buf, Fixture.ALL_REMOTE);
        mr.rw.readLock().lock();
        try {
            assertRefused(mr.userMemory());
            assertEquals(LEN, mr.userMemory().translate(0, LEN).stream().mapToLong(s -> s.length()).sum());
        } finally {
            mr.rw.readLock().unlock();
        }
        mr.destroy();
        buf.put();
    }
}
