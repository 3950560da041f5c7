package dev.dmaplane.dma.impl;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.FaultReason;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The device's address translation cache (PCIe ATS, as the PCIe base specification's Address Translation
 * Services chapter describes it; Linux enables it with {@code pci_enable_ats}): several translated runs at once,
 * whole pages, each for the direction it was checked for, all dropped by an IOTLB invalidation (an unmap).
 */
class TranslationCacheTest {
    private final Machine m = Machine.bootDefault();

    @AfterEach
    void close() {
        m.close();
    }

    @Test
    void severalRunsStayCachedUntilAnUnmapAndTheOldestIsEvicted() {
        PciFunction fn = m.pci().function("04:00.0");
        fn.setMaster(true);
        fn.dma().setDmaMask(-1L);
        DeviceBusMaster bm = (DeviceBusMaster) fn.dma().busMaster();
        HostMemory ram = m.memory();
        int pages = DeviceBusMaster.ATC_ENTRIES + 1;
        List<Long> iovas = new ArrayList<>();
        List<Long> frames = new ArrayList<>();
        for (int i = 0; i < pages; i++) {
            long frame = ram.allocPages(0) * HostMemory.PAGE_SIZE;
            ram.allocPages(0); // a gap, so that no two pages join into one run
            ram.write(frame, MemorySegment.ofArray(new byte[]{(byte) i}));
            frames.add(frame);
            iovas.add(fn.dma().mapSingle(frame, 4096, DmaDirection.TO_DEVICE));
        }
        MemorySegment one = MemorySegment.ofArray(new byte[1]);
        long before = bm.translationRequests();
        for (int i = 0; i < 4; i++) {
            bm.read(iovas.get(i) + 100, one); // a request anywhere in the page
        }
        assertEquals(before + 4, bm.translationRequests(), "one translation per page");
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < 4; i++) {
                bm.read(iovas.get(i), one);
                assertEquals((byte) i, one.get(ValueLayout.JAVA_BYTE, 0));
                bm.read(iovas.get(i) + 4095, one);
            }
        }
        assertEquals(before + 4, bm.translationRequests(), "all four served by the cache, from the start of each page");

        for (int i = 4; i < pages; i++) { // the cache fills up, and the oldest entry, page 0's, is evicted
            bm.read(iovas.get(i), one);
        }
        long full = bm.translationRequests();
        bm.read(iovas.get(1), one);
        assertEquals(full, bm.translationRequests(), "page 1 is still cached");
        bm.read(iovas.get(0), one);
        assertEquals(full + 1, bm.translationRequests(), "page 0 was evicted");

        fn.dma().unmapSingle(iovas.get(2), 4096, DmaDirection.TO_DEVICE);
        assertEquals(FaultReason.NOT_MAPPED,
                assertThrows(DmaFaultException.class, () -> bm.read(iovas.get(2), one)).reason());
        long afterUnmap = bm.translationRequests();
        bm.read(iovas.get(3), one);
        assertEquals(afterUnmap + 1, bm.translationRequests(), "the unmap's invalidation dropped every entry");
        assertEquals(FaultReason.PERMISSION,
                assertThrows(DmaFaultException.class, () -> bm.write(iovas.get(3), one)).reason(),
                "an entry filled by a read serves no write");
        for (int i = 0; i < pages; i++) {
            if (i != 2) {
                fn.dma().unmapSingle(iovas.get(i), 4096, DmaDirection.TO_DEVICE);
            }
        }
    }
}
