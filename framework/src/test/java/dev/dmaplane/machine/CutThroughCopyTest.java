package dev.dmaplane.machine;

import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.FaultReason;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRoute;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@link BusMaster#copyTo}: one device reads and another writes the same bytes with no staging buffer, each side
 * translated and checked by its own IOMMU domain as its reads and writes are (Documentation/core-api/dma-api.rst:
 * a device reaches memory only through what was mapped for it); a peer's BAR at either end goes through the
 * switch as PCIe address routing takes it (Documentation/driver-api/pci/p2pdma.rst). Also the decoder cache that
 * sends an address no BAR or bridge window decodes straight to the root complex, and the one-walk translation.
 */
class CutThroughCopyTest {
    private final Machine m = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);

    @AfterEach
    void close() {
        m.close();
    }

    private static BusMaster master(PciFunction fn) {
        fn.setMaster(true);
        fn.dma().setDmaMask(-1L);
        return fn.dma().busMaster();
    }

    /** The physical address of a fresh block of 2^order frames. */
    private static long frames(HostMemory ram, int order) {
        return ram.allocPages(order) * HostMemory.PAGE_SIZE;
    }

    private static byte[] pattern(int n, int seed) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 31 + seed);
        }
        return b;
    }

    @Test
    void bytesGoFromOneDevicesMappingToAnothersThroughBothDomains() {
        PciFunction a = m.pci().function("04:00.0");
        PciFunction b = m.pci().function("05:00.0");
        BusMaster ma = master(a); // 64-bit masks before mapping: no bouncing through swiotlb
        BusMaster mb = master(b);
        HostMemory ram = m.memory();
        long src = frames(ram, 9); // 2 MiB, so the copy crosses 4 KiB pages and a 2 MiB block boundary below
        long dst = frames(ram, 9);
        long len = (1 << 20) + 12345;
        byte[] data = pattern((int) len, 5);
        ram.write(src + 1000, MemorySegment.ofArray(data));
        long srcIova = a.dma().mapSingle(src, 2L << 20, DmaDirection.TO_DEVICE);
        long dstIova = b.dma().mapSingle(dst, 2L << 20, DmaDirection.FROM_DEVICE);

        ma.copyTo(srcIova + 1000, mb, dstIova + 3000, len);

        byte[] out = new byte[(int) len];
        ram.read(dst + 3000, MemorySegment.ofArray(out));
        assertArrayEquals(data, out);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> ma.copyTo(srcIova, mb, dstIova, -1)).errno(), "a negative length");
        a.dma().unmapSingle(srcIova, 2L << 20, DmaDirection.TO_DEVICE);
        b.dma().unmapSingle(dstIova, 2L << 20, DmaDirection.FROM_DEVICE);
    }

    /**
     * A descriptor chain: every descriptor's bytes land where it says, a call stops at a descriptor the translation
     * caches do not serve and the next call goes on from there, and a refusal comes only as the first descriptor
     * of a call, with the descriptors before it done and none after it.
     */
    @Test
    void aDescriptorChainCopiesInOrderAndIsRefusedOnlyAtItsFirstDescriptor() {
        PciFunction a = m.pci().function("04:00.0");
        PciFunction b = m.pci().function("05:00.0");
        BusMaster ma = master(a);
        BusMaster mb = master(b);
        HostMemory ram = m.memory();
        long src = frames(ram, 0);
        long dst = frames(ram, 0);
        long far = frames(ram, 0);
        ram.write(src, MemorySegment.ofArray(pattern(4096, 7)));
        long srcIova = a.dma().mapSingle(src, 4096, DmaDirection.TO_DEVICE);
        long dstIova = b.dma().mapSingle(dst, 4096, DmaDirection.FROM_DEVICE);
        long farIova = b.dma().mapSingle(far, 4096, DmaDirection.FROM_DEVICE);
        int n = 8;
        long[] from = new long[n];
        long[] to = new long[n];
        int[] len = new int[n];
        for (int i = 0; i < n; i++) { // 64-byte pieces of the source, reversed in the target
            from[i] = 64L * i;
            to[i] = 64L * (n - 1 - i);
            len[i] = 64;
        }
        to[5] = farIova - dstIova + 128; // one descriptor lands in another mapping

        assertEquals(5, ma.copyTo(srcIova, mb, dstIova, from, to, len, 0, n), "stops where the target's cache misses");
        assertEquals(1, ma.copyTo(srcIova, mb, dstIova, from, to, len, 5, n), "goes on from there, and stops again");
        assertEquals(2, ma.copyTo(srcIova, mb, dstIova, from, to, len, 6, n));
        byte[] whole = pattern(4096, 7);
        for (int i = 0; i < n; i++) {
            byte[] out = new byte[64];
            ram.read(i == 5 ? far + 128 : dst + to[i], MemorySegment.ofArray(out));
            assertArrayEquals(Arrays.copyOfRange(whole, 64 * i, 64 * i + 64), out, "descriptor " + i);
        }

        // a descriptor into nothing mapped: the call before it stops short, the one starting at it is refused
        ram.write(dst, MemorySegment.ofArray(new byte[4096]));
        to[5] = dstIova + (64L << 20) - dstIova;
        assertEquals(5, ma.copyTo(srcIova, mb, dstIova, from, to, len, 0, n));
        assertEquals(FaultReason.NOT_MAPPED, assertThrows(DmaFaultException.class,
                () -> ma.copyTo(srcIova, mb, dstIova, from, to, len, 5, n)).reason());
        byte[] out = new byte[64];
        ram.read(dst + to[6], MemorySegment.ofArray(out));
        assertArrayEquals(new byte[64], out, "nothing after the refused descriptor moved");
        ram.read(dst + to[4], MemorySegment.ofArray(out));
        assertArrayEquals(Arrays.copyOfRange(whole, 256, 320), out, "everything before it did");

        // with bus mastering off, the chain's first descriptor is refused: no run from a cached translation
        b.setMaster(false);
        assertEquals(FaultReason.BUS_MASTER_DISABLED, assertThrows(DmaFaultException.class,
                () -> ma.copyTo(srcIova, mb, dstIova, from, to, len, 0, 4)).reason());
        b.setMaster(true);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> ma.copyTo(srcIova, mb, dstIova, from, to, len, 3, 3)).errno(), "an empty chain");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> ma.copyTo(srcIova, mb, dstIova, from, to, len, 0, n + 1)).errno(), "past the arrays");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> ma.copyTo(srcIova, mb, dstIova, from, null, len, 0, 1)).errno(), "no target offsets");
        a.dma().unmapSingle(srcIova, 4096, DmaDirection.TO_DEVICE);
        b.dma().unmapSingle(dstIova, 4096, DmaDirection.FROM_DEVICE);
        b.dma().unmapSingle(farIova, 4096, DmaDirection.FROM_DEVICE);
    }

    @Test
    void theTranslationCacheForgetsAnUnmappedRange() {
        PciFunction a = m.pci().function("04:00.0");
        BusMaster ma = master(a);
        HostMemory ram = m.memory();
        long page = frames(ram, 0);
        ram.write(page, MemorySegment.ofArray(pattern(64, 3)));
        long iova = a.dma().mapSingle(page, 4096, DmaDirection.TO_DEVICE);
        MemorySegment out = MemorySegment.ofArray(new byte[64]);
        ma.read(iova, out); // fills the cache
        ma.read(iova, out); // served by it
        assertArrayEquals(pattern(64, 3), out.toArray(ValueLayout.JAVA_BYTE));
        a.setMaster(false);
        assertEquals(FaultReason.BUS_MASTER_DISABLED, assertThrows(DmaFaultException.class, () -> ma.read(iova, out)).reason(),
                "a cached translation does not skip the requester's own checks");
        a.setMaster(true);
        ma.read(iova, out);
        assertEquals(FaultReason.PERMISSION, assertThrows(DmaFaultException.class, () -> ma.write(iova, out)).reason(),
                "an entry filled by a read serves no write");
        a.dma().unmapSingle(iova, 4096, DmaDirection.TO_DEVICE);
        assertEquals(FaultReason.NOT_MAPPED, assertThrows(DmaFaultException.class, () -> ma.read(iova, out)).reason(),
                "the unmap invalidated the cached translation");
    }

    @Test
    void eachSideIsCheckedByItsOwnDomain() {
        PciFunction a = m.pci().function("04:00.0");
        PciFunction b = m.pci().function("05:00.0");
        BusMaster ma = master(a); // 64-bit masks before mapping: no bouncing through swiotlb
        BusMaster mb = master(b);
        HostMemory ram = m.memory();
        long src = frames(ram, 0);
        long dst = frames(ram, 0);
        ram.write(src, MemorySegment.ofArray(pattern(4096, 1)));
        long srcIova = a.dma().mapSingle(src, 4096, DmaDirection.TO_DEVICE);
        long dstRo = b.dma().mapSingle(dst, 4096, DmaDirection.TO_DEVICE); // the device may only read it

        DmaFaultException e = assertThrows(DmaFaultException.class,
                () -> ma.copyTo(srcIova, mb, dstRo, 4096));
        assertEquals(FaultReason.PERMISSION, e.reason());
        assertEquals("0000:05:00.0", e.device());
        byte[] out = new byte[4096];
        ram.read(dst, MemorySegment.ofArray(out));
        assertArrayEquals(new byte[4096], out, "no byte moved");

        // once a's mapping is gone, a's domain refuses the read before b writes anything
        a.dma().unmapSingle(srcIova, 4096, DmaDirection.TO_DEVICE);
        b.dma().unmapSingle(dstRo, 4096, DmaDirection.TO_DEVICE);
        long dstRw = b.dma().mapSingle(dst, 4096, DmaDirection.FROM_DEVICE);
        DmaFaultException e2 = assertThrows(DmaFaultException.class, () -> ma.copyTo(srcIova, mb, dstRw, 64));
        assertEquals(FaultReason.NOT_MAPPED, e2.reason());
        assertEquals("0000:04:00.0", e2.device());
        ram.read(dst, MemorySegment.ofArray(out));
        assertArrayEquals(new byte[4096], out, "no byte moved");
        b.dma().unmapSingle(dstRw, 4096, DmaDirection.FROM_DEVICE);
    }

    @Test
    void aPeersBarAtTheFarEndIsWrittenThroughTheSwitch() {
        PciFunction hca = m.pci().function("04:00.0");
        BusMaster bm = master(hca);
        Bar vram = m.pci().function("03:00.0").bar(2).orElseThrow();
        HostMemory ram = m.memory();
        long src = frames(ram, 5);
        byte[] data = pattern(100_000, 9);
        ram.write(src, MemorySegment.ofArray(data));
        long iova = hca.dma().mapSingle(src, 128 * 1024, DmaDirection.TO_DEVICE);

        bm.copyTo(iova, bm, vram.address() + 8192, data.length); // HCA reads RAM, writes the GPU's VRAM

        byte[] out = new byte[data.length];
        vram.memory().read(8192, MemorySegment.ofArray(out));
        assertArrayEquals(data, out);
        hca.dma().unmapSingle(iova, 128 * 1024, DmaDirection.TO_DEVICE);
    }

    @Test
    void theDecoderCacheFollowsConfigWrites() {
        Bar vram = m.pci().function("03:00.0").bar(2).orElseThrow();
        long old = vram.address();
        long moved = old + (64L << 30);
        PciFunction hca = m.pci().function("04:00.0");
        assertTrue(m.pci().claimedBelowRootComplex(old + 4096));
        assertFalse(m.pci().claimedBelowRootComplex(0x1000), "low RAM addresses: no BAR or window decodes them");
        assertFalse(m.pci().claimedBelowRootComplex(moved + 4096));
        assertInstanceOf(PciRoute.RootComplex.class, m.pci().route(hca, moved + 4096));

        // the driver moves BAR2 (memory decoding off while it does, as pci_update_resource does)
        PciFunction gpu = m.pci().function("03:00.0");
        int cmd = gpu.configSpace().read(0x04, 2);
        gpu.configSpace().write(0x04, 2, cmd & ~0x2);
        int reg = 0x10 + 4 * vram.index();
        gpu.configSpace().write(reg, 4, (int) moved | (gpu.configSpace().read(reg, 4) & 0xF));
        gpu.configSpace().write(reg + 4, 4, (int) (moved >>> 32));
        gpu.configSpace().write(0x04, 2, cmd);

        assertEquals(moved, vram.address());
        assertTrue(m.pci().claimedBelowRootComplex(moved + 4096), "the cache saw the config writes");
        assertInstanceOf(PciRoute.Peer.class, m.pci().route(gpu, moved + 4096),
                "and the full route is asked: the GPU's own BAR decodes it now");
    }

    @Test
    void oneWalkGivesTheTranslationAndTheLeafsExtent() {
        PciFunction a = m.pci().function("05:00.0");
        master(a);
        IommuDomain d = m.iommu().groupOf(a).orElseThrow().domain();
        HostMemory ram = m.memory();
        long huge = frames(ram, 9);
        long iova = a.dma().mapSingle(huge, 2L << 20, DmaDirection.BIDIRECTIONAL);

        IommuDomain.Run r = d.translateRun(a.name(), iova + 100, 10L << 20, false);
        assertEquals(d.translate(a.name(), iova + 100, 1, false), r.phys());
        assertEquals(d.contiguousFrom(iova + 100), r.length(), "up to the end of the leaf (nothing maps what follows)");
        assertEquals(7, d.translateRun(a.name(), iova + 100, 7, true).length());
        // 4 KiB leaves of physically contiguous memory make one run
        long block = frames(ram, 8);
        long small = a.dma().mapSingle(block, 1 << 20, DmaDirection.TO_DEVICE);
        assertEquals(4096, d.contiguousFrom(small));
        assertEquals((1 << 20) - 100, d.translateRun(a.name(), small + 100, 8L << 20, false).length());
        assertEquals(FaultReason.PERMISSION,
                assertThrows(DmaFaultException.class, () -> d.translateRun(a.name(), small, 8, true)).reason());
        a.dma().unmapSingle(small, 1 << 20, DmaDirection.TO_DEVICE);
        a.dma().unmapSingle(iova, 2L << 20, DmaDirection.BIDIRECTIONAL);
        assertEquals(FaultReason.NOT_MAPPED,
                assertThrows(DmaFaultException.class, () -> d.translateRun(a.name(), iova + 100, 8, false)).reason());
    }
}
