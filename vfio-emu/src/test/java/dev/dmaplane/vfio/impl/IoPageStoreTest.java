package dev.dmaplane.vfio.impl;

import dev.dmaplane.iommu.IoPageTable;
import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** {@link IoPageStore}'s count of pinned pages ({@code drivers/iommu/iommufd/pages.c}). */
class IoPageStoreTest {
    private static final long PAGE = IoPageTable.PAGE_SIZE;

    /**
     * Areas of pinned RAM count their pages; an area of a dma-buf's MMIO counts none, as iommufd neither pins nor
     * charges a dma-buf's pages ({@code iopt_is_dmabuf}): they have no {@code struct page}.
     */
    @Test
    void onlyPagesOfRamCountAsPinned() {
        IoPageStore store = new IoPageStore("test");
        AtomicInteger released = new AtomicInteger();
        IoPageStore.Pages ram = new IoPageStore.Pages(new long[] {0x10_0000, 0x20_0000}, true,
                dirty -> released.incrementAndGet());
        IoPageStore.Pages mmio = new IoPageStore.Pages(new long[] {0xe000_0000L, 0xe000_1000L, 0xe000_2000L}, true,
                false, dirty -> released.incrementAndGet());
        IoPageStore.Area a = store.map(ram, 0, 0x1000_0000L, 2 * PAGE, 0, IoPageTable.PROT_READ);
        IoPageStore.Area b = store.map(mmio, 0, 0x2000_0000L, 3 * PAGE, 0, IoPageTable.PROT_READ);
        assertEquals(2, store.pinnedPages(), "two pages of RAM, three of MMIO");
        store.unmap(b);
        assertEquals(2, store.pinnedPages());
        store.unmap(a);
        assertEquals(0, store.pinnedPages());
        assertEquals(2, released.get(), "both areas let their pages go");
    }
}
