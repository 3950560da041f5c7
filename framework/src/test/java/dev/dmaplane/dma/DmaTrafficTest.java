package dev.dmaplane.dma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link DmaApi#traffic()} and {@link Machine#dmaTraffic()}: the bytes a device's bus master moved, by where they
 * landed, as an IIO uncore PMU counts inbound requests per root port ({@code arch/x86/events/intel/uncore_snbep.c}).
 * A request a switch routes to a peer's BAR never reaches host RAM (PCIe Base Spec address routing;
 * {@code Documentation/driver-api/pci/p2pdma.rst}), nor does one {@code dma_map_resource} sends through the host
 * bridge into a BAR ({@code Documentation/core-api/dma-api.rst}); a request the IOMMU or the fabric refuses moves
 * nothing and counts nothing. Real bytes are checked where they landed.
 */
class DmaTrafficTest {
    private static final int LEN = 3 * 4096 + 123;

    private final Machine m = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final PciFunction gpu = m.pci().function("03:00.0");
    private final PciFunction hca = m.pci().function("04:00.0");
    private final PciFunction hca2 = m.pci().function("05:00.0");
    private final Bar vram = gpu.bar(2).orElseThrow();

    @AfterEach
    void close() {
        m.close();
    }

    /** {@code fn} may master the bus with 64-bit addresses, as a driver's probe sets it up. */
    private static BusMaster master(PciFunction fn) {
        fn.setMaster(true);
        fn.dma().setDmaMask(-1L);
        return fn.dma().busMaster();
    }

    private static byte[] pattern(int n, int seed) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 131 + seed);
        }
        return b;
    }

    /** The physical address of a fresh block of 2^order frames. */
    private long frames(int order) {
        return m.memory().allocPages(order) * HostMemory.PAGE_SIZE;
    }

    private byte[] ram(long phys, int n) {
        byte[] out = new byte[n];
        m.memory().read(phys, MemorySegment.ofArray(out));
        return out;
    }

    private byte[] bar(long offset, int n) {
        byte[] out = new byte[n];
        vram.memory().read(offset, MemorySegment.ofArray(out));
        return out;
    }

    @Test
    void aDeviceWritingAndReadingRamCountsRamBytesOnce() {
        BusMaster dev = master(hca);
        long page = frames(2);
        long iova = hca.dma().mapSingle(page, 4 * 4096, DmaDirection.BIDIRECTIONAL);
        byte[] data = pattern(LEN, 1);
        DmaTraffic device0 = hca.dma().traffic();
        DmaTraffic machine0 = m.dmaTraffic();

        dev.write(iova + 100, MemorySegment.ofArray(data)); // crosses three page boundaries: four transactions
        dev.write(iova + 100, MemorySegment.ofArray(data)); // again, from the translation cache
        byte[] back = new byte[LEN];
        dev.read(iova + 100, MemorySegment.ofArray(back));
        dev.writeLong(iova, 42);
        assertEquals(42, dev.readLong(iova));

        assertArrayEquals(data, ram(page + 100, LEN));
        assertArrayEquals(data, back);
        DmaTraffic expected = new DmaTraffic(LEN + 8, 2L * LEN + 8, 0, 0, 0);
        assertEquals(expected, hca.dma().traffic().minus(device0));
        assertEquals(expected, m.dmaTraffic().minus(machine0), "the machine counts what its devices count");
        assertEquals(DmaTraffic.ZERO, hca2.dma().traffic(), "another device moved nothing");
        hca.dma().unmapSingle(iova, 4 * 4096, DmaDirection.BIDIRECTIONAL);
    }

    @Test
    void aWriteTheSwitchCarriesIntoGpuVramIsPeerTrafficNotRam() {
        BusMaster dev = master(hca);
        long offset = (3L << 20) - 1000; // crosses a 2 MiB chunk of device memory
        int window = 128 * 1024;
        long bus = hca.dma().mapPeer(vram.address() + offset, window, DmaDirection.BIDIRECTIONAL);
        byte[] data = pattern(64 * 1024, 2);
        long counter = 64 * 1024 + 8; // past the data, 8-byte aligned
        DmaTraffic machine0 = m.dmaTraffic();

        dev.write(bus, MemorySegment.ofArray(data));
        dev.read(bus, MemorySegment.ofArray(new byte[4096]));
        assertEquals(0, dev.fetchAndAdd(bus + counter, 5));
        assertEquals(5, dev.compareAndSwap(bus + counter, 5, 6));

        assertArrayEquals(data, bar(offset, data.length), "the bytes landed in VRAM");
        assertEquals(6, MemorySegment.ofArray(bar(offset + counter, 8)).get(ValueLayout.JAVA_LONG_UNALIGNED, 0),
                "and the AtomicOps");
        DmaTraffic expected = new DmaTraffic(0, 0, 4096, 64 * 1024, 2);
        assertEquals(expected, hca.dma().traffic(), "peer-to-peer: no host byte written");
        assertEquals(expected, m.dmaTraffic().minus(machine0));
        hca.dma().unmapPeer(bus, window, DmaDirection.BIDIRECTIONAL);
    }

    @Test
    void aWriteThroughTheHostBridgeIntoABarIsPeerTraffic() {
        BusMaster dev = master(hca2); // another root port: the IOMMU translates, the root complex routes into the BAR
        long iova = hca2.dma().mapResource(vram.address() + 8192, 8192, DmaDirection.BIDIRECTIONAL);
        byte[] data = pattern(8192, 3);

        dev.write(iova, MemorySegment.ofArray(data));

        assertArrayEquals(data, bar(8192, 8192));
        assertEquals(new DmaTraffic(0, 0, 0, 8192, 0), hca2.dma().traffic());
        hca2.dma().unmapResource(iova, 8192, DmaDirection.BIDIRECTIONAL);
    }

    @Test
    void copyToCountsTheSourcesReadAndTheTargetsWrite() {
        BusMaster a = master(hca);
        BusMaster b = master(hca2);
        long src = frames(9);
        long dst = frames(9);
        int len = (1 << 20) + 12345;
        byte[] data = pattern(len, 4);
        m.memory().write(src + 1000, MemorySegment.ofArray(data));
        long srcIova = hca.dma().mapSingle(src, 2L << 20, DmaDirection.TO_DEVICE);
        long dstIova = hca2.dma().mapSingle(dst, 2L << 20, DmaDirection.FROM_DEVICE);
        long bus = hca.dma().mapPeer(vram.address(), 64 * 1024, DmaDirection.FROM_DEVICE);

        a.copyTo(srcIova + 1000, b, dstIova + 3000, len); // RAM to RAM, cut through
        assertArrayEquals(data, ram(dst + 3000, len));
        assertEquals(new DmaTraffic(len, 0, 0, 0, 0), hca.dma().traffic(), "the source only read");
        assertEquals(new DmaTraffic(0, len, 0, 0, 0), hca2.dma().traffic(), "the target only wrote");

        DmaTraffic a0 = hca.dma().traffic();
        a.copyTo(srcIova + 1000, a, bus, 64 * 1024); // RAM to a peer's BAR: the write takes the RAM as it is
        assertArrayEquals(Arrays.copyOf(data, 64 * 1024), bar(0, 64 * 1024));
        assertEquals(new DmaTraffic(64 * 1024, 0, 0, 64 * 1024, 0), hca.dma().traffic().minus(a0));

        DmaTraffic a2 = hca.dma().traffic();
        DmaTraffic b2 = hca2.dma().traffic();
        long busRead = hca.dma().mapPeer(vram.address(), 64 * 1024, DmaDirection.TO_DEVICE);
        a.copyTo(busRead + 100, b, dstIova + 5, 64 * 1024 - 100); // a peer's BAR to RAM: read straight into it
        assertArrayEquals(Arrays.copyOfRange(data, 100, 64 * 1024), ram(dst + 5, 64 * 1024 - 100));
        assertEquals(new DmaTraffic(0, 0, 64 * 1024 - 100, 0, 0), hca.dma().traffic().minus(a2), "the peer read");
        assertEquals(new DmaTraffic(0, 64 * 1024 - 100, 0, 0, 0), hca2.dma().traffic().minus(b2), "RAM written");

        DmaTraffic a1 = hca.dma().traffic();
        DmaTraffic b1 = hca2.dma().traffic();
        long[] from = {0, 4096, 8192, 100};
        long[] to = {8192, 0, 4096, 20000};
        int[] lengths = {4096, 4096, 4096, 77};
        int done = 0;
        while (done < from.length) {
            done += a.copyTo(srcIova, b, dstIova, from, to, lengths, done, from.length);
        }
        assertArrayEquals(Arrays.copyOf(data, 4096 - 1000), ram(dst + 8192 + 1000, 4096 - 1000), "descriptor 0 landed");
        long chain = 3 * 4096 + 77;
        assertEquals(new DmaTraffic(chain, 0, 0, 0, 0), hca.dma().traffic().minus(a1), "every descriptor once");
        assertEquals(new DmaTraffic(0, chain, 0, 0, 0), hca2.dma().traffic().minus(b1));
        assertEquals(new DmaTraffic(len + 64 * 1024 + chain, len + 64 * 1024 - 100 + chain, 64 * 1024 - 100, 64 * 1024, 0),
                m.dmaTraffic());

        hca.dma().unmapPeer(bus, 64 * 1024, DmaDirection.FROM_DEVICE);
        hca.dma().unmapSingle(srcIova, 2L << 20, DmaDirection.TO_DEVICE);
        hca2.dma().unmapSingle(dstIova, 2L << 20, DmaDirection.FROM_DEVICE);
    }

    @Test
    void aRefusedRequestCountsNothingAndOnlyTheTransactionsBeforeItCount() {
        BusMaster dev = master(hca);
        long page = frames(0);
        long iova = hca.dma().mapSingle(page, 4096, DmaDirection.BIDIRECTIONAL);
        MemorySegment eight = MemorySegment.ofArray(new byte[8]);

        assertEquals(FaultReason.NOT_MAPPED,
                assertThrows(DmaFaultException.class, () -> dev.write(iova + (64L << 20), eight)).reason());
        assertEquals(FaultReason.UNSUPPORTED_REQUEST, assertThrows(DmaFaultException.class,
                () -> dev.write(gpu.bar(0).orElseThrow().address(), eight)).reason(), "a register BAR takes no DMA");
        assertEquals(FaultReason.MISALIGNED, assertThrows(DmaFaultException.class, () -> dev.fetchAndAdd(iova + 4, 1)).reason());
        hca.setMaster(false);
        assertEquals(FaultReason.BUS_MASTER_DISABLED, assertThrows(DmaFaultException.class, () -> dev.write(iova, eight)).reason());
        hca.setMaster(true);
        assertEquals(DmaTraffic.ZERO, hca.dma().traffic());
        assertEquals(DmaTraffic.ZERO, m.dmaTraffic());

        byte[] data = pattern(8192, 5); // the first page is mapped, the second is not
        assertThrows(DmaFaultException.class, () -> dev.write(iova, MemorySegment.ofArray(data)));
        assertArrayEquals(Arrays.copyOf(data, 4096), ram(page, 4096), "the first transaction completed");
        assertEquals(new DmaTraffic(0, 4096, 0, 0, 0), hca.dma().traffic(), "and only it counts");
        hca.dma().unmapSingle(iova, 4096, DmaDirection.BIDIRECTIONAL);
    }

    @Test
    void deltasAreReadingsMinusEarlierReadings() {
        DmaTraffic earlier = new DmaTraffic(1, 2, 3, 4, 5);
        DmaTraffic later = new DmaTraffic(11, 22, 33, 44, 55);
        assertEquals(new DmaTraffic(10, 20, 30, 40, 50), later.minus(earlier));
        assertEquals(DmaTraffic.ZERO, later.minus(later));
        ErrnoException backwards = assertThrows(ErrnoException.class, () -> earlier.minus(later));
        assertEquals(Errno.EINVAL, backwards.errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> later.minus(null)).errno());
        ErrnoException negative = assertThrows(ErrnoException.class, () -> new DmaTraffic(0, -1, 0, 0, 0));
        assertEquals(Errno.EINVAL, negative.errno());
        assertTrue(negative.getMessage().contains("ramWrite -1"), negative.getMessage());
    }

    @Test
    void theMachineKeepsTheTrafficOfADeviceThatLeft() {
        BusMaster dev = master(hca2);
        long page = frames(0);
        long iova = hca2.dma().mapSingle(page, 4096, DmaDirection.FROM_DEVICE);
        dev.write(iova, MemorySegment.ofArray(pattern(4096, 6)));

        m.hotUnplug(hca2);

        assertEquals(new DmaTraffic(0, 4096, 0, 0, 0), m.dmaTraffic());
    }
}
