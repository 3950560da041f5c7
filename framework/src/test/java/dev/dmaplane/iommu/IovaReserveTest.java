package dev.dmaplane.iommu;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Reserved IOVA ranges ({@code reserve_iova} in {@code drivers/iommu/iova.c}, used by {@code iova_reserve_pci_windows}
 * in {@code drivers/iommu/dma-iommu.c}): a reserved range is never handed out, whether it was free in the tree or
 * sitting in a per-CPU cache.
 */
class IovaReserveTest {
    private static final long K4 = 4096;
    private static final long M1 = 1L << 20;

    @Test
    void aReservedRangeIsNeverHandedOut() {
        IovaAllocator a = new IovaAllocator(K4, K4, 16 * M1);
        assertEquals(4 * M1, a.reserve(4 * M1, 8 * M1));
        assertEquals(0, a.reserve(5 * M1, 6 * M1), "already reserved");
        assertEquals(K4, a.reserve(8 * M1 + 1, 8 * M1 + 2), "widened to the granule");
        List<Long> got = new ArrayList<>();
        while (true) {
            try {
                got.add(a.alloc(K4, 16 * M1));
            } catch (ErrnoException e) {
                assertEquals(Errno.ENOMEM, e.errno());
                break;
            }
        }
        assertEquals((16 * M1 - K4 - 4 * M1 - K4) / K4, got.size(), "everything else is still there");
        for (long iova : got) {
            assertFalse(iova >= 4 * M1 && iova < 8 * M1 + K4, "0x" + Long.toHexString(iova) + " is reserved");
        }
    }

    @Test
    void cachedFreeIovasAreReservedToo() {
        IovaAllocator a = new IovaAllocator(K4, K4, 16 * M1);
        long top = a.alloc(K4, 16 * M1);
        a.free(top, K4);
        assertEquals(M1, a.reserve(15 * M1, 16 * M1), "the freed page sat in a cache, and is reserved with the rest");
        assertTrue(a.alloc(K4, 16 * M1) < 15 * M1);
    }

    @Test
    void anEmptyRangeIsRefused() {
        IovaAllocator a = new IovaAllocator(K4, K4, 16 * M1);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> a.reserve(M1, M1)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> a.reserve(-K4, M1)).errno());
        assertEquals(0, a.reserve(32 * M1, 64 * M1), "outside the domain there is nothing to take");
    }
}
