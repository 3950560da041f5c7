package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.vfio.Vfio;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code nvme perf} as spdk_nvme_perf runs ({@code app/spdk_nvme_perf/perf.c}): every {@code -w} pattern runs on the
 * user-space driver and checks the data it reads back (each worker on its own slice of the namespace, see
 * {@link PerfWorker}); polled and MSI-X; several workers; nothing pinned, mapped or bound after.
 */
class NvmePerfTest {
    private static final Duration SHORT = Duration.ofMillis(300);
    private final Machine machine = Machine.bootDefault();
    private final long pinsBefore = machine.memory().pinsOutstanding();

    @AfterEach
    void close() {
        try {
            assertEquals(pinsBefore, machine.memory().pinsOutstanding(), "no page pinned after the run");
            assertEquals(0, Vfio.of(machine).pinnedPages());
            assertTrue(machine.iommu().domains().stream().noneMatch(d -> d.type() == IommuDomainType.UNMANAGED));
            assertTrue(machine.pci().function(PerfOptions.DEFAULT_BDF).driver().isEmpty());
            assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().startsWith("nvme-perf")),
                    "every worker stopped");
        } finally {
            machine.close();
        }
    }

    private static PerfOptions options(Workload w) {
        PerfOptions o = PerfOptions.of(8, 4096, w, SHORT);
        return w.mixed() ? o.withRwMixRead(70) : o;
    }

    @ParameterizedTest
    @EnumSource(Workload.class)
    void everyWorkloadRunsAndChecksItsData(Workload w) {
        PerfResult r = NvmePerf.run(machine, options(w), false);
        WorkerResult t = r.total();
        assertTrue(t.ios() > 0, w + ": I/Os completed");
        assertEquals(w.reads ? t.ios() - t.writes() : 0, t.reads(), w + ": reads");
        if (w.reads) {
            assertTrue(t.verified() > 0, w + ": reads verified");
        }
        if (w.mixed()) {
            assertTrue(t.writes() > 0 && t.reads() > 0, w + ": both directions");
        }
        assertTrue(t.minLatNs() > 0 && t.minLatNs() <= t.maxLatNs(), "latencies measured");
    }

    /** Writes of one run are what the reads of the next see: the sequence check across two runs on one machine. */
    @Test
    void readsAfterWritesSeeTheWrittenData() {
        NvmePerf.run(machine, PerfOptions.of(16, 8192, Workload.WRITE, SHORT), false);
        PerfResult r = NvmePerf.run(machine, PerfOptions.of(16, 8192, Workload.READ, SHORT), false);
        assertTrue(r.total().verified() > 0);
    }

    /**
     * The data checks catch a namespace that does not hold what the run expects (spdk_nvme_perf checks nothing; the
     * checks are {@link PerfWorker}'s): a block at LBA 0 that carries another LBA in its header, and a block never
     * written by a run (header zero) with one byte that is not zero, are each EIO naming the LBA. A sequential read
     * reads LBA 0 first, and the first read of a worker is one of those checked in full.
     */
    @Test
    void aReadOfWrongDataIsEio() {
        corruptLba0(0, 5);
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> NvmePerf.run(machine, PerfOptions.of(8, 4096, Workload.READ, SHORT), false));
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().contains("data check of LBA 0") && e.getMessage().contains("carries LBA 5"),
                e.getMessage());

        corruptLba0(100, 0x5a);
        e = assertThrows(ErrnoException.class,
                () -> NvmePerf.run(machine, PerfOptions.of(8, 4096, Workload.READ, SHORT), false));
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().contains("data check of LBA 0") && e.getMessage().contains("not all zeroes"),
                e.getMessage());
    }

    /** Writes 4 KiB of zeroes to LBA 0 through the driver, but with {@code value} in the byte at {@code at}. */
    private void corruptLba0(int at, int value) {
        try (NvmeController c = NvmeController.attach(machine, PerfOptions.DEFAULT_BDF,
                NvmeController.Options.DEFAULT);
             DmaRegion buf = DmaRegion.allocate(c.frontEnd(), DmaRegion.PAGE)) {
            QueuePair qp = c.createIoQueuePair(2, 4096, false);
            try {
                buf.page(0).set(ValueLayout.JAVA_BYTE, at, (byte) value);
                c.io(qp, NvmeCommand.NVM_WRITE, 0, buf, 0, 4096);
            } finally {
                qp.close();
            }
        }
    }

    /**
     * {@code -a}: the warm-up is not measured: the run time measured is the one asked for (at least it, and less than
     * the 2 s warm-up it would be over if the warm-up counted), for the driver and for the direct copies.
     */
    @Test
    void theWarmupIsNotMeasured() {
        Duration warmup = Duration.ofSeconds(2);
        PerfResult r = NvmePerf.run(machine, PerfOptions.of(4, 4096, Workload.RANDREAD, SHORT).withWarmup(warmup),
                true);
        for (WorkerResult w : List.of(r.workers().getFirst(), r.direct().orElseThrow())) {
            assertTrue(w.elapsedNs() >= SHORT.toNanos() && w.elapsedNs() < warmup.toNanos(),
                    "measured " + w.elapsedNs() + " ns");
            assertTrue(w.ios() > 0);
        }
    }

    @Test
    void msixCompletionAndSeveralWorkers() {
        PerfResult r = NvmePerf.run(machine, options(Workload.RANDRW).withIrq(true).withWorkers(2), false);
        assertEquals(2, r.workers().size());
        assertTrue(r.workers().stream().allMatch(w -> w.ios() > 0), "each worker did I/O");
        assertTrue(r.report().contains("Completion: MSI-X"));
    }

    @Test
    void largeIosUsePrpLists() {
        PerfResult r = NvmePerf.run(machine, PerfOptions.of(4, 64 * 1024, Workload.RANDRW, SHORT).withRwMixRead(50),
                false);
        assertTrue(r.total().verified() > 0);
    }

    @Test
    void optionsTheControllerCannotTakeAreEinval() {
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> NvmePerf.run(machine, PerfOptions.of(8, 256 * 1024, Workload.READ, SHORT), false));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("MDTS"), e.getMessage());
    }
}
