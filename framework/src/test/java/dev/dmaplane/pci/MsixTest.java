package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The MSI-X table, PBA and Message Control as PCI Express Base Spec 7.7.2 and {@code Documentation/PCI/msi-howto.rst}
 * describe them, on the default machine's NVMe function (32 vectors, table at {@code 0x2000} and PBA at
 * {@code 0x3000} of BAR 0) and its GPU (64 vectors in the second half of BAR 0).
 */
class MsixTest {
    private static final long ADDR = 0xFEE0_1000L;

    private record Msg(int vector, long address, int data) {
    }

    private PciTopology t;
    private PciFunction nvme;
    private Bar.Mmio bar;
    private Msix msix;
    private int ctl;
    private final List<Msg> got = new ArrayList<>();
    private final Msix.Sink sink = (v, a, d) -> got.add(new Msg(v, a, d));

    @BeforeEach
    void load() {
        t = TopologyLoader.defaultMachine();
        nvme = t.function("0000:06:00.0");
        bar = nvme.bar(0).orElseThrow().mmio();
        msix = nvme.msix().orElseThrow();
        ctl = nvme.configSpace().findCapability(CAP_ID_MSIX).orElseThrow() + MSIX_FLAGS;
        msix.attach(sink);
    }

    @AfterEach
    void close() {
        t.close();
    }

    private long entry(int vector, int field) {
        return 0x2000L + (long) vector * MSIX_ENTRY_SIZE + field;
    }

    /** Programs {@code vector} as {@code pci_write_msi_msg} does and unmasks it. */
    private void program(int vector, int data) {
        bar.write(entry(vector, MSIX_ENTRY_LOWER_ADDR), 4, ADDR);
        bar.write(entry(vector, MSIX_ENTRY_UPPER_ADDR), 4, 0);
        bar.write(entry(vector, MSIX_ENTRY_DATA), 4, data);
        bar.write(entry(vector, MSIX_ENTRY_VECTOR_CTRL), 4, 0);
    }

    private void enable() {
        nvme.configSpace().write(ctl, 2, MSIX_FLAGS_ENABLE);
        nvme.setMaster(true);
    }

    @Test
    void theCapabilityNamesTheTableAndPbaAndEveryVectorStartsMasked() {
        assertEquals(32, msix.vectors());
        assertEquals(0, msix.bar());
        assertEquals(0x2000, msix.tableOffset());
        assertEquals(0x3000, msix.pbaOffset());
        assertFalse(msix.enabled());
        for (int v = 0; v < 32; v++) {
            assertTrue(msix.masked(v));
            assertEquals(MSIX_ENTRY_CTRL_MASKBIT, bar.read(entry(v, MSIX_ENTRY_VECTOR_CTRL), 4));
        }
        assertEquals(0, bar.read(0x3000, 8));
        Msix gpu = t.function("0000:03:00.0").msix().orElseThrow();
        assertEquals(64, gpu.vectors());
        assertEquals(8L << 20, gpu.tableOffset());
        assertTrue(t.function("0000:00:01.0").msix().isEmpty());
    }

    @Test
    void tableEntriesAreRegistersOfTheBarWithTheirReservedBitsReadOnly() {
        bar.write(entry(3, MSIX_ENTRY_LOWER_ADDR), 8, 0x0000_0001_FEE0_2003L);
        bar.write(entry(3, MSIX_ENTRY_DATA), 4, 0x4041);
        bar.write(entry(3, MSIX_ENTRY_VECTOR_CTRL), 4, 0xFFFF_FFFEL);
        assertEquals(0x0000_0001_FEE0_2000L, bar.read(entry(3, MSIX_ENTRY_LOWER_ADDR), 8));
        assertEquals(0xFEE0_2000L, bar.read(entry(3, MSIX_ENTRY_LOWER_ADDR), 4));
        assertEquals(0x41, bar.read(entry(3, MSIX_ENTRY_DATA), 1));
        assertEquals(0, bar.read(entry(3, MSIX_ENTRY_VECTOR_CTRL), 4), "only the Mask bit of Vector Control is writable");
        assertFalse(msix.masked(3));
        bar.write(entry(3, MSIX_ENTRY_VECTOR_CTRL), 1, 1);
        assertTrue(msix.masked(3));
        assertTrue(msix.masked(4), "its neighbour is untouched");
    }

    @Test
    void thePbaIsReadOnly() {
        enable();
        msix.raise(5);
        bar.write(0x3000, 8, 0);
        assertEquals(1L << 5, bar.read(0x3000, 8));
        assertEquals(1L << 5, bar.read(0x3000, 4));
    }

    @Test
    void anUnmaskedVectorDeliversItsMessage() {
        program(7, 0x77);
        enable();
        assertEquals(Msix.Outcome.DELIVERED, msix.raise(7));
        assertEquals(List.of(new Msg(7, ADDR, 0x77)), got);
        assertEquals(1, msix.delivered());
        assertFalse(msix.pending(7));
    }

    @Test
    void aMaskedVectorSetsItsPendingBitAndIsDeliveredOnUnmask() {
        program(9, 0x99);
        bar.write(entry(9, MSIX_ENTRY_VECTOR_CTRL), 4, MSIX_ENTRY_CTRL_MASKBIT);
        enable();
        assertEquals(Msix.Outcome.PENDING, msix.raise(9));
        assertEquals(Msix.Outcome.PENDING, msix.raise(9));
        assertTrue(msix.pending(9));
        assertEquals(1L << 9, bar.read(0x3000, 8));
        assertTrue(got.isEmpty());
        bar.write(entry(9, MSIX_ENTRY_VECTOR_CTRL), 4, 0);
        assertEquals(List.of(new Msg(9, ADDR, 0x99)), got, "one message for however many raises while masked");
        assertFalse(msix.pending(9));
        assertEquals(0, bar.read(0x3000, 8));
    }

    @Test
    void theFunctionMaskHoldsEveryVectorAndItsClearingDeliversThePendingOnes() {
        program(1, 0x11);
        program(2, 0x22);
        nvme.setMaster(true);
        nvme.configSpace().write(ctl, 2, MSIX_FLAGS_ENABLE | MSIX_FLAGS_MASKALL);
        assertTrue(msix.functionMasked());
        assertEquals(Msix.Outcome.PENDING, msix.raise(2));
        assertEquals(Msix.Outcome.PENDING, msix.raise(1));
        assertFalse(msix.masked(1), "the Function Mask leaves the vector's own Mask bit alone");
        assertTrue(got.isEmpty());
        nvme.configSpace().write(ctl, 2, MSIX_FLAGS_ENABLE);
        assertEquals(List.of(new Msg(1, ADDR, 0x11), new Msg(2, ADDR, 0x22)), got);
        assertFalse(msix.pending(1));
        assertFalse(msix.pending(2));
    }

    @Test
    void aPendingVectorStillMaskedStaysPendingWhenTheFunctionIsUnmasked() {
        nvme.setMaster(true);
        nvme.configSpace().write(ctl, 2, MSIX_FLAGS_ENABLE | MSIX_FLAGS_MASKALL);
        msix.raise(4);
        nvme.configSpace().write(ctl, 2, MSIX_FLAGS_ENABLE);
        assertTrue(msix.pending(4), "vector 4's own Mask bit is still set from reset");
        assertTrue(got.isEmpty());
    }

    /** A raise racing the unmask is either sent at once or left pending for the unmask to send: never lost. */
    @Test
    void aRaiseRacingAnUnmaskIsNeitherLostNorSentTwice() throws Exception {
        msix.detach(sink);
        AtomicInteger sent = new AtomicInteger();
        msix.attach((v, a, d) -> sent.incrementAndGet());
        enable();
        try (ExecutorService pool = Executors.newFixedThreadPool(2)) {
            for (int i = 0; i < 2000; i++) {
                bar.write(entry(0, MSIX_ENTRY_VECTOR_CTRL), 4, MSIX_ENTRY_CTRL_MASKBIT);
                CyclicBarrier start = new CyclicBarrier(2);
                Future<?> raise = pool.submit(() -> {
                    start.await(10, TimeUnit.SECONDS);
                    return msix.raise(0);
                });
                Future<?> unmask = pool.submit(() -> {
                    start.await(10, TimeUnit.SECONDS);
                    bar.write(entry(0, MSIX_ENTRY_VECTOR_CTRL), 4, 0);
                    return null;
                });
                raise.get(10, TimeUnit.SECONDS);
                unmask.get(10, TimeUnit.SECONDS);
                assertEquals(i + 1, sent.get(), "round " + i);
                assertFalse(msix.pending(0), "round " + i);
            }
            pool.shutdown();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
        }
    }

    @Test
    void withoutMsixEnableARaiseIsDroppedAndCounted() {
        program(0, 1);
        nvme.setMaster(true);
        assertEquals(Msix.Outcome.DROPPED, msix.raise(0));
        assertEquals(1, msix.dropped());
        assertFalse(msix.pending(0));
        assertTrue(got.isEmpty());
    }

    @Test
    void withoutBusMasterEnableMsixIsRefused() {
        program(0, 1);
        nvme.configSpace().write(ctl, 2, MSIX_FLAGS_ENABLE);
        assertFalse(nvme.busMasterEnabled());
        assertEquals(Msix.Outcome.DROPPED, msix.raise(0));
        assertEquals(1, msix.dropped());
        assertTrue(got.isEmpty());
        nvme.setMaster(true);
        assertEquals(Msix.Outcome.DELIVERED, msix.raise(0));
    }

    @Test
    void withoutASinkTheMessageReachesNobodyAndIsDropped() {
        program(0, 1);
        enable();
        msix.detach(sink);
        assertEquals(Msix.Outcome.DROPPED, msix.raise(0));
        assertEquals(1, msix.dropped());
    }

    @Test
    void theStructuresAnswerOnlyWhileMemorySpaceIsDecoded() {
        nvme.setMemorySpace(false);
        bar.write(entry(0, MSIX_ENTRY_VECTOR_CTRL), 4, 0);
        assertEquals(0xFFFF_FFFFL, bar.read(entry(0, MSIX_ENTRY_VECTOR_CTRL), 4));
        nvme.setMemorySpace(true);
        assertTrue(msix.masked(0), "the store was dropped like any access to a BAR that is not decoded");
    }

    @Test
    void offsetsOutsideTheStructuresStillGoToTheDeviceModel() {
        assertEquals(0xFFFF_FFFFL, bar.read(0x1000, 4), "no device model attached");
        bar.attach(new MmioHandler() {
            @Override
            public long read(long offset, int size) {
                return 0x5A;
            }

            @Override
            public void write(long offset, int size, long value) {
                fail("the table write reached the device model");
            }
        });
        assertEquals(0x5A, bar.read(0x1000, 4));
        assertEquals(MSIX_ENTRY_CTRL_MASKBIT, bar.read(entry(0, MSIX_ENTRY_VECTOR_CTRL), 4));
        bar.write(entry(0, MSIX_ENTRY_VECTOR_CTRL), 4, 0);
        assertFalse(msix.masked(0));
    }

    @Test
    void badVectorsAndASecondSinkAreRefused() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> msix.raise(32));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("vector 32"), e.getMessage());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> msix.pending(-1)).errno());
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, () -> msix.attach((v, a, d) -> { })).errno());
        assertEquals(0, msix.dropped(), "a refused raise is not a dropped interrupt");
    }
}
