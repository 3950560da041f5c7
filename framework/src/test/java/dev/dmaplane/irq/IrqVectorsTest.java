package dev.dmaplane.irq;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciTopology;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.irq.IrqVectors.*;
import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * MSI-X vectors as a driver gets them: {@code pci_alloc_irq_vectors} ({@code drivers/pci/msi/api.c},
 * {@code Documentation/PCI/msi-howto.rst}), {@code request_threaded_irq}/{@code free_irq} ({@code kernel/irq/manage.c}),
 * devres release on driver removal ({@code drivers/base/devres.c}) and eventfd triggers ({@code fs/eventfd.c}), on the
 * default machine's NVMe function (32 vectors).
 */
class IrqVectorsTest {
    private static final long WAIT = 10;

    private PciTopology t;
    private PciFunction nvme;
    private Msix msix;

    @BeforeEach
    void load() {
        t = TopologyLoader.defaultMachine();
        nvme = t.function("0000:06:00.0");
        nvme.setMaster(true);
        msix = nvme.msix().orElseThrow();
    }

    @AfterEach
    void close() {
        t.close();
    }

    private static void assertErrno(Errno errno, String mentions, Executable call) {
        ErrnoException e = assertThrows(ErrnoException.class, call);
        assertEquals(errno, e.errno(), e.getMessage());
        assertTrue(e.getMessage().contains(mentions), e.getMessage());
    }

    /** Nothing of a refused or closed allocation is left: no devres entry, MSI-X free to allocate again. */
    private void assertNothingHeld() {
        assertEquals(0, nvme.devres().size());
        try (IrqVectors again = IrqVectors.alloc(nvme, 1, 1, PCI_IRQ_MSIX)) {
            assertEquals(1, again.count());
        }
        assertFalse(msix.enabled());
    }

    @Test
    void badAllocationsGetTheirErrnoAndLeaveNothing() {
        assertErrno(Errno.EINVAL, "min_vecs 0", () -> IrqVectors.alloc(nvme, 0, 4, PCI_IRQ_MSIX));
        assertErrno(Errno.EINVAL, "max_vecs 2 is below min_vecs 3", () -> IrqVectors.alloc(nvme, 3, 2, PCI_IRQ_MSIX));
        assertErrno(Errno.EINVAL, "0x14", () -> IrqVectors.alloc(nvme, 1, 2, PCI_IRQ_MSIX | 0x10));
        assertErrno(Errno.EINVAL, "function is null", () -> IrqVectors.alloc(null, 1, 1, PCI_IRQ_MSIX));
        assertErrno(Errno.ENOSPC, "no MSI capability for min_vecs 2",
                () -> IrqVectors.alloc(nvme, 2, 2, PCI_IRQ_MSI | PCI_IRQ_INTX));
        assertErrno(Errno.ENOSPC, "flags 0x0 allow no interrupt type", () -> IrqVectors.alloc(nvme, 1, 2, 0));
        assertErrno(Errno.ENOSPC, "32 MSI-X vectors, fewer than min_vecs 33", () -> IrqVectors.alloc(nvme, 33, 64, PCI_IRQ_MSIX));
        assertErrno(Errno.ENOSPC, "no MSI-X", () -> IrqVectors.alloc(t.function("0000:00:01.0"), 1, 1, PCI_IRQ_MSIX));
        nvme.setMemorySpace(false);
        assertErrno(Errno.EIO, "memory", () -> IrqVectors.alloc(nvme, 1, 1, PCI_IRQ_MSIX));
        nvme.setMemorySpace(true);
        assertNothingHeld();
    }

    @Test
    void theCountIsWhatTheCapabilityHasUpToMax() {
        try (IrqVectors iv = IrqVectors.alloc(nvme, 1, 8, PCI_IRQ_MSIX)) {
            assertEquals(8, iv.count());
        }
        try (IrqVectors iv = IrqVectors.alloc(nvme, 4, 100, PCI_IRQ_MSIX | PCI_IRQ_MSI)) {
            assertEquals(32, iv.count());
        }
    }

    @Test
    void aSecondAllocationOnTheFunctionIsRefused() {
        try (IrqVectors iv = IrqVectors.alloc(nvme, 1, 4, PCI_IRQ_MSIX)) {
            assertErrno(Errno.EBUSY, "already", () -> IrqVectors.alloc(nvme, 1, 4, PCI_IRQ_MSIX));
            assertEquals(1, nvme.devres().size());
            iv.request(0, v -> IrqReturn.HANDLED, null, "q0");
            assertEquals(Msix.Outcome.DELIVERED, msix.raise(0), "the first allocation still receives");
        }
        assertNothingHeld();
    }

    @Test
    void allocationProgramsTheTableAndLeavesVectorsMaskedUntilRequested() {
        Bar.Mmio bar = nvme.bar(0).orElseThrow().mmio();
        try (IrqVectors iv = IrqVectors.alloc(nvme, 1, 4, PCI_IRQ_MSIX)) {
            assertTrue(msix.enabled());
            assertFalse(msix.functionMasked());
            assertEquals(MSI_ADDRESS, bar.read(0x2000 + 2 * MSIX_ENTRY_SIZE + MSIX_ENTRY_LOWER_ADDR, 8));
            assertEquals(2, bar.read(0x2000 + 2 * MSIX_ENTRY_SIZE + MSIX_ENTRY_DATA, 4));
            assertTrue(msix.masked(2));
            assertEquals(Msix.Outcome.PENDING, msix.raise(2));
            iv.request(2, v -> IrqReturn.HANDLED, null, "q2");
            assertFalse(msix.masked(2));
            assertEquals(1, iv.interrupts(2), "the pending message arrived on unmask");
            iv.free(2);
            assertTrue(msix.masked(2));
        }
    }

    @Test
    void theHardPartRunsOnTheRaisingThreadAndIsCounted() {
        AtomicReference<Thread> ran = new AtomicReference<>();
        try (IrqVectors iv = IrqVectors.alloc(nvme, 1, 4, PCI_IRQ_MSIX)) {
            iv.request(1, v -> {
                ran.set(Thread.currentThread());
                return v == 1 ? IrqReturn.HANDLED : IrqReturn.NONE;
            }, null, "nvme0q1");
            msix.raise(1);
            msix.raise(1);
            assertSame(Thread.currentThread(), ran.get());
            assertEquals(2, iv.interrupts(1));
            assertEquals(0, iv.unhandled(1));
            assertTrue(iv.procInterrupts().contains("   1:          2  PCI-MSIX-0000:06:00.0    1-edge      nvme0q1"),
                    iv.procInterrupts());
            assertFalse(iv.procInterrupts().contains("   0:"), "unrequested vectors are not listed");
        }
    }

    @Test
    void aVectorRequestedTwiceIsRefusedAndKeepsItsFirstHandler() {
        try (IrqVectors iv = IrqVectors.alloc(nvme, 1, 4, PCI_IRQ_MSIX)) {
            IrqTrigger first = new IrqTrigger();
            iv.requestTrigger(3, first, "first");
            assertErrno(Errno.EBUSY, "vector 3 is already requested by 'first'",
                    () -> iv.request(3, v -> IrqReturn.HANDLED, v -> IrqReturn.HANDLED, "second"));
            msix.raise(3);
            assertEquals(1, first.count());
            assertErrno(Errno.EINVAL, "vector 4 is outside", () -> iv.request(4, v -> IrqReturn.HANDLED, null, "x"));
            assertErrno(Errno.EINVAL, "neither", () -> iv.request(0, null, null, "x"));
            assertErrno(Errno.EINVAL, "blank", () -> iv.request(0, v -> IrqReturn.HANDLED, null, " "));
            assertErrno(Errno.EINVAL, "not requested", () -> iv.free(0));
        }
    }

    @Test
    void theThreadedPartRunsOnTheVectorsThreadWhichFreeStops() throws Exception {
        AtomicReference<Thread> threaded = new AtomicReference<>();
        IrqTrigger done = new IrqTrigger();
        try (IrqVectors iv = IrqVectors.alloc(nvme, 1, 4, PCI_IRQ_MSIX)) {
            iv.request(0, v -> IrqReturn.WAKE_THREAD, v -> {
                threaded.set(Thread.currentThread());
                done.signal();
                return IrqReturn.HANDLED;
            }, "nvme0q0");
            msix.raise(0);
            assertEquals(1, done.await(WAIT, TimeUnit.SECONDS));
            assertEquals("irq/0-nvme0q0", threaded.get().getName());
            assertNotSame(Thread.currentThread(), threaded.get());
            iv.free(0);
            assertFalse(threaded.get().isAlive(), "free_irq stopped the thread");
            assertEquals(Msix.Outcome.PENDING, msix.raise(0), "a freed vector is masked");
            assertEquals(1, iv.interrupts(0));
        }
    }

    @Test
    void aThreadOnlyHandlerIsWokenWithoutAHardPart() throws Exception {
        IrqTrigger done = new IrqTrigger();
        try (IrqVectors iv = IrqVectors.alloc(nvme, 1, 4, PCI_IRQ_MSIX)) {
            iv.request(2, null, v -> {
                done.signal();
                return IrqReturn.HANDLED;
            }, "t");
            msix.raise(2);
            assertEquals(1, done.await(WAIT, TimeUnit.SECONDS));
        }
    }

    @Test
    void unhandledAndFailingHandlersAreCounted() {
        try (IrqVectors iv = IrqVectors.alloc(nvme, 1, 4, PCI_IRQ_MSIX)) {
            iv.request(0, v -> IrqReturn.NONE, null, "none");
            iv.request(1, v -> {
                throw new IllegalStateException("handler bug (expected by the test)");
            }, null, "fails");
            iv.request(2, v -> IrqReturn.WAKE_THREAD, null, "no thread");
            msix.raise(0);
            msix.raise(1);
            msix.raise(2);
            assertEquals(1, iv.unhandled(0));
            assertEquals(1, iv.unhandled(1));
            assertEquals(1, iv.unhandled(2));
        }
    }

    @Test
    void aHandlerFreeingItsOwnVectorGetsEdeadlk() {
        AtomicReference<ErrnoException> got = new AtomicReference<>();
        try (IrqVectors iv = IrqVectors.alloc(nvme, 1, 4, PCI_IRQ_MSIX)) {
            iv.request(0, v -> {
                got.set(assertThrows(ErrnoException.class, () -> iv.free(0)));
                return IrqReturn.HANDLED;
            }, null, "self");
            msix.raise(0);
            assertEquals(Errno.EDEADLK, got.get().errno());
            assertEquals(Msix.Outcome.DELIVERED, msix.raise(0), "the vector is still requested");
        }
    }

    @Test
    void requestAfterCloseIsRefused() {
        IrqVectors iv = IrqVectors.alloc(nvme, 1, 4, PCI_IRQ_MSIX);
        iv.close();
        iv.close();
        assertErrno(Errno.EINVAL, "freed", () -> iv.request(0, v -> IrqReturn.HANDLED, null, "late"));
        assertNothingHeld();
    }

    @Test
    void aTriggerCountsSignalsAndAReadResetsIt() throws Exception {
        IrqTrigger trigger = new IrqTrigger();
        try (IrqVectors iv = IrqVectors.alloc(nvme, 1, 4, PCI_IRQ_MSIX)) {
            iv.requestTrigger(1, trigger, "vfio-msix[1]");
            msix.raise(1);
            msix.raise(1);
            msix.raise(1);
            assertEquals(3, trigger.await(WAIT, TimeUnit.SECONDS));
            assertEquals(0, trigger.await(0, TimeUnit.SECONDS), "read reset it; a zero wait times out");
            assertErrno(Errno.EINVAL, "-1", () -> trigger.await(-1, TimeUnit.SECONDS));
        }
    }

    @Test
    void driverRemovalFreesTheVectorsAndStopsTheirThreads() throws Exception {
        AtomicReference<IrqVectors> vectors = new AtomicReference<>();
        AtomicReference<Thread> threaded = new AtomicReference<>();
        IrqTrigger ran = new IrqTrigger();
        DeviceCore core = new DeviceCore(new Tracer());
        core.registerDriver(new Driver() {
            @Override
            public String name() {
                return "nvme";
            }

            @Override
            public MatchTable matchTable() {
                return MatchTable.of(MatchEntry.Pci.ofClass(0x010802, 0xffffff));
            }

            @Override
            public BoundDevice probe(Device device, MatchEntry match) {
                IrqVectors iv = IrqVectors.alloc((PciFunction) device, 1, 32, PCI_IRQ_MSIX);
                iv.request(0, null, v -> {
                    threaded.set(Thread.currentThread());
                    ran.signal();
                    return IrqReturn.HANDLED;
                }, "nvme0q0");
                vectors.set(iv);
                return () -> { };
            }
        });
        core.addDevice(nvme, null);
        assertSame("nvme", nvme.driver().orElseThrow().name());
        msix.raise(0);
        assertEquals(1, ran.await(WAIT, TimeUnit.SECONDS));
        core.removeDevice(nvme);
        assertFalse(threaded.get().isAlive(), "the irq thread was stopped on remove");
        assertErrno(Errno.EINVAL, "freed", () -> vectors.get().request(1, v -> IrqReturn.HANDLED, null, "late"));
        assertEquals(Msix.Outcome.DROPPED, msix.raise(0), "MSI-X Enable was cleared");
        assertNothingHeld();
    }

    /** {@code /proc/interrupts} over several functions lists only live allocations, found from the functions alone. */
    @Test
    void liveAllocationsAreFoundThroughTheirFunctionAndListedTogether() {
        PciFunction gpu = t.function("0000:03:00.0");
        gpu.setMaster(true);
        assertTrue(IrqVectors.of(nvme).isEmpty());
        try (IrqVectors n = IrqVectors.alloc(nvme, 2, 2, PCI_IRQ_MSIX);
             IrqVectors g = IrqVectors.alloc(gpu, 1, 1, PCI_IRQ_MSIX)) {
            assertSame(n, IrqVectors.of(nvme).orElseThrow());
            assertSame(g, IrqVectors.of(gpu).orElseThrow());
            n.requestTrigger(1, new IrqTrigger(), "nvme0q1");
            g.requestTrigger(0, new IrqTrigger(), "ce");
            msix.raise(1);
            msix.raise(1);
            gpu.msix().orElseThrow().raise(0);
            assertEquals("""
                                CPU0
                       1:          2  PCI-MSIX-0000:06:00.0    1-edge      nvme0q1
                       0:          1  PCI-MSIX-0000:03:00.0    0-edge      ce
                     ERR:          0
                    """, IrqVectors.procInterrupts(List.of(nvme, t.function("0000:00:01.0"), gpu)));
        }
        assertTrue(IrqVectors.of(nvme).isEmpty(), "closed allocations are gone");
        assertEquals("            CPU0%n ERR:          0%n".formatted(), IrqVectors.procInterrupts(List.of(nvme, gpu)));
    }
}
