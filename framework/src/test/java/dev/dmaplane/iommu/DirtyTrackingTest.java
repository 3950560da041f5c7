package dev.dmaplane.iommu;

import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.CopyEngineClient;
import dev.dmaplane.testing.TestMachines;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.lang.foreign.MemorySegment;
import java.util.BitSet;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.ST_OK;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * IOMMU dirty tracking as {@code drivers/iommu/io-pgtable-arm.c} ({@code arm_lpae_read_and_clear_dirty}, DBM) and
 * {@code drivers/iommu/intel/} ({@code intel_iommu_set_dirty_tracking}, {@code intel_iommu_read_and_clear_dirty})
 * implement {@code domain->dirty_ops}, driven as {@code drivers/iommu/iommufd/io_pagetable.c}
 * ({@code iopt_set_dirty_tracking}, {@code iopt_read_and_clear_dirty_data}) drives them, with real device writes
 * through the IOMMU and the device's translation cache: a write translation sets the dirty bit before the cache holds
 * it, and clearing the bits flushes the cache, so no write reaches a clean page unseen.
 */
class DirtyTrackingTest {
    private static final long PAGE = 4096;

    private final Machine machine = TestMachines.boot(TestMachines.SMALL_GPU);
    private final PciFunction gpu = machine.pci().function("01:00.0");
    private final IommuDomain domain = machine.iommu().groupOf(gpu).orElseThrow().domain();
    private final DmaApi dma = gpu.dma();
    private final BusMaster device = dma.busMaster();

    DirtyTrackingTest() {
        gpu.setMaster(true);
    }

    @AfterEach
    void close() {
        machine.close();
    }

    /** {@code pages} fresh pages of RAM mapped for the device; returns their IOVA. */
    private long mapPages(int pages, DmaDirection dir) {
        long pfn = machine.memory().allocPages(Integer.numberOfTrailingZeros(pages));
        return dma.mapSingle(pfn << 12, pages * PAGE, dir);
    }

    private static BitSet bits(int... set) {
        BitSet b = new BitSet();
        for (int i : set) {
            b.set(i);
        }
        return b;
    }

    private void deviceWrites(long iova, long length) {
        device.write(iova, MemorySegment.ofArray(new byte[(int) length]).fill((byte) 0x5a));
    }

    private static void assertErrno(Errno errno, Executable call) {
        ErrnoException e = assertThrows(ErrnoException.class, call);
        assertEquals(errno, e.errno(), e.getMessage());
    }

    @Test
    void theBitmapIsExactlyThePagesTheDeviceWrote() {
        long buf = mapPages(8, DmaDirection.BIDIRECTIONAL);
        domain.setDirtyTracking(true);

        deviceWrites(buf + PAGE + 100, 2 * PAGE);
        device.read(buf + 6 * PAGE, MemorySegment.ofArray(new byte[(int) PAGE]));

        assertEquals(bits(1, 2, 3), domain.readAndClearDirty(buf, 8 * PAGE, PAGE, true),
                "the pages the write touched; a read dirties nothing");
        assertEquals(bits(0), domain.readAndClearDirty(buf, 8 * PAGE, 8 * PAGE, true),
                "one bit per 32 KiB page of the bitmap");
        assertEquals(bits(1, 2, 3), domain.readAndClearDirty(buf, 8 * PAGE, PAGE, false),
                "NO_CLEAR left them; this read clears them");
        assertEquals(new BitSet(), domain.readAndClearDirty(buf, 8 * PAGE, PAGE, false));
    }

    @Test
    void aWriteThroughACachedTranslationAfterTheClearIsSeenAgain() {
        long buf = mapPages(4, DmaDirection.BIDIRECTIONAL);
        domain.setDirtyTracking(true);
        deviceWrites(buf, 4 * PAGE);
        deviceWrites(buf + 2 * PAGE, 8); // served by the translation cache
        assertEquals(bits(0, 1, 2, 3), domain.readAndClearDirty(buf, 4 * PAGE, PAGE, false));

        deviceWrites(buf + 2 * PAGE, 8);

        assertEquals(bits(2), domain.readAndClearDirty(buf, 4 * PAGE, PAGE, false),
                "the clear flushed the cached write translation: the next write set the bit again");
    }

    @Test
    void enablingReportsNoEarlierWriteAndDropsCachedWriteTranslations() {
        long buf = mapPages(2, DmaDirection.BIDIRECTIONAL);
        deviceWrites(buf, 2 * PAGE); // tracking off: the cache now holds a clean write translation

        domain.setDirtyTracking(true);
        assertEquals(new BitSet(), domain.readAndClearDirty(buf, 2 * PAGE, PAGE, true), "no write since enabling");
        deviceWrites(buf + PAGE, 8);

        assertEquals(bits(1), domain.readAndClearDirty(buf, 2 * PAGE, PAGE, false));
        domain.setDirtyTracking(false);
        deviceWrites(buf, 8);
        assertFalse(domain.dirtyTracking());
        assertErrno(Errno.EINVAL, () -> domain.readAndClearDirty(buf, 2 * PAGE, PAGE, false));
    }

    @Test
    void theCopyEngineDmaDirtiesItsDestinationOnly() {
        long src = mapPages(4, DmaDirection.TO_DEVICE);
        long dst = mapPages(4, DmaDirection.FROM_DEVICE);
        try (CopyEngineClient ce = new CopyEngineClient(gpu)) {
            domain.setDirtyTracking(true);

            assertEquals(ST_OK, ce.copy(src, dst + PAGE, (int) (2 * PAGE)));

            assertEquals(new BitSet(), domain.readAndClearDirty(src, 4 * PAGE, PAGE, false));
            assertEquals(bits(1, 2), domain.readAndClearDirty(dst, 4 * PAGE, PAGE, false));
        }
    }

    @Test
    void aDirtyBlockMarksAllItsPagesAndKeepsItsBitWhenSplit() {
        IommuDomain d = machine.iommu().allocDomain(IommuDomainType.UNMANAGED);
        long phys = machine.memory().allocPages(9) << 12;
        d.map(2L << 20, phys, 2L << 20, IoPageTable.PROT_READ | IoPageTable.PROT_WRITE, "test");
        d.setDirtyTracking(true);
        d.translate("dev", (2L << 20) + 5 * PAGE, 8, true);

        assertEquals(512, d.readAndClearDirty(2L << 20, 2L << 20, PAGE, true).cardinality());
        d.unmap((2L << 20) + 7 * PAGE, PAGE, "test");
        BitSet after = d.readAndClearDirty(2L << 20, 2L << 20, PAGE, false);
        assertEquals(511, after.cardinality(), "the pages of the split block stay dirty");
        assertFalse(after.get(7));
        assertFalse(IoPageTable.dirtyOf(d.pageTable().walk(2L << 20)), "the read cleared them");
        machine.iommu().freeDomain(d);
    }

    @Test
    void badRequestsAreRefusedAsIommufdAndTheDriversDo() {
        long buf = mapPages(2, DmaDirection.BIDIRECTIONAL);
        assertErrno(Errno.EINVAL, () -> domain.readAndClearDirty(buf, 2 * PAGE, PAGE, true));
        domain.setDirtyTracking(true);
        assertErrno(Errno.EINVAL, () -> domain.readAndClearDirty(buf + 1, 2 * PAGE, PAGE, true));
        assertErrno(Errno.EINVAL, () -> domain.readAndClearDirty(buf, PAGE + 1, PAGE, true));
        assertErrno(Errno.EINVAL, () -> domain.readAndClearDirty(buf, 0, PAGE, true));
        assertErrno(Errno.EINVAL, () -> domain.readAndClearDirty(buf, 2 * PAGE, 3 * PAGE, true));
        assertErrno(Errno.EINVAL, () -> domain.readAndClearDirty(buf, 2 * PAGE, 512, true));
        assertErrno(Errno.EINVAL, () -> domain.readAndClearDirty(0, 1L << 47, PAGE, true));
        assertErrno(Errno.ERANGE, () -> domain.readAndClearDirty(1L << 48, PAGE, PAGE, true));
        IommuDomain identity = machine.iommu().allocDomain(IommuDomainType.IDENTITY);
        assertErrno(Errno.EOPNOTSUPP, () -> identity.setDirtyTracking(true));
        assertErrno(Errno.EOPNOTSUPP, () -> identity.readAndClearDirty(0, PAGE, PAGE, true));
        IommuDomain freed = machine.iommu().allocDomain(IommuDomainType.UNMANAGED);
        machine.iommu().freeDomain(freed);
        assertErrno(Errno.ENODEV, () -> freed.setDirtyTracking(true));
    }

    /**
     * An IOMMU without {@code IOMMU_CAP_DIRTY_TRACKING} gives its domains no {@code dirty_ops}: what iommufd's
     * {@code iopt_set_dirty_tracking} answers with {@code EOPNOTSUPP} ({@code drivers/iommu/iommufd/io_pagetable.c}).
     */
    @Test
    void anIommuWithoutDirtyBitsHasNoDirtyOps() {
        assertTrue(machine.iommu().dirtyTracking(), "the default IOMMU has dirty bits");
        Iommu clean = new Iommu(true, IommuDomainType.DMA, false, new Tracer());
        assertFalse(clean.dirtyTracking());
        IommuDomain d = clean.allocDomain(IommuDomainType.UNMANAGED);
        assertErrno(Errno.EOPNOTSUPP, () -> d.setDirtyTracking(true));
        assertErrno(Errno.EOPNOTSUPP, () -> d.readAndClearDirty(0, PAGE, PAGE, true));
        assertFalse(d.dirtyTracking());
    }
}
