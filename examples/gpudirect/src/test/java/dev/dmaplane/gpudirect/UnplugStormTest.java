package dev.dmaplane.gpudirect;

import dev.dmaplane.accel.AccelDevice;
import dev.dmaplane.accel.Command;
import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.Submission;
import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.driver.gpu.host.GpuHost;
import dev.dmaplane.driver.gpu.model.GpuModel;
import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 12's "100 GPU hot-unplugs under RDMA and job traffic". Each cycle the GPU model arrives (hot-add: the GPU
 * driver probes {@code 0000:03:00.0}), a context exports a VRAM object that rxe0 registers as a dynamic importer
 * ({@code ib_umem_dmabuf}, {@code drivers/infiniband/core/umem_dmabuf.c}), rxe1 RDMA-WRITEs into it from a thread of
 * its own, CRC32C kernels queue behind a spinning kernel on the compute engine and copies on a copy engine, and the
 * model leaves mid-traffic (surprise removal: the hardware leaves the slot, then {@code
 * pci_stop_and_remove_bus_device} removes the driver). Checked per cycle as {@code drm_dev_unplug} and
 * {@code drm_sched_fini} ({@code drivers/gpu/drm/drm_drv.c}, {@code drivers/gpu/drm/scheduler/sched_main.c}) and
 * the revoke of {@code Documentation/driver-api/dma-buf.rst} (importers told through {@code move_notify}, maps
 * refused) have it: every job's fence signals, the queued ones {@code ECANCELED}, the copies with success or
 * {@code ECANCELED}; rxe1's writes succeed until one fails remotely and the rest are flushed; the dma-buf is
 * revoked and a write into the region after it is {@code IBV_WC_REM_ACCESS_ERR}; the device is gone ({@code ENODEV}
 * to open, {@code EIO} on the context). Every cycle, and the storm as a whole, leaves no frame, pin, DMA mapping,
 * dma-buf, verbs object, accel context or GPU thread.
 */
class UnplugStormTest {
    private static final Logger LOG = LoggerFactory.getLogger(UnplugStormTest.class);
    private static final long MIB = 1L << 20;
    private static final int CYCLES = 100;
    private static final long SIZE = 4 * MIB;
    private static final long MESSAGE = 64 * 1024;
    /** Work requests rxe1 keeps in flight. */
    private static final int WINDOW = 16;
    private static final int COPIES = 8;
    private static final int CRCS = 4;
    private static final long IOVA = 0x7d00_0000_0000L;
    private static final long SEED = 1212;
    private static final Duration WAIT = Duration.ofSeconds(20);
    private static final String GPU_BDF = "0000:03:00.0";
    /** The GPU's threads: the model's engines, the driver's interrupt threads and drm_sched workers. */
    private static final Pattern GPU_THREAD = Pattern.compile(Pattern.quote(GPU_BDF)
            + " gpu .*|irq/.*-gpu-.*|drm_sched-.*");
    /**
     * How rxe1's writes may end: {@code IBV_WC_REM_ACCESS_ERR} once the region is revoked (its next map fails), or
     * {@code IBV_WC_REM_OP_ERR} for a write that reached the GPU's BAR after the hardware left the slot and before
     * the driver's remove revoked the region (the switch claims the address, no function decodes it: an Unsupported
     * Request for rxe0's DMA).
     */
    private static final Set<WcStatus> WRITE_ENDS = EnumSet.of(WcStatus.REM_ACCESS_ERR, WcStatus.REM_OP_ERR);
    private static final Set<DmaDebugReport.Kind> BAD_ACCESS = EnumSet.of(DmaDebugReport.Kind.ACCESS_UNMAPPED,
            DmaDebugReport.Kind.ACCESS_REVOKED, DmaDebugReport.Kind.ACCESS_READ_ONLY);

    /**
     * rxe1 RDMA-WRITEing the payload into rxe0's region, {@link #WINDOW} requests in flight, until a completion is
     * not SUCCESS (then it reaps the flushed rest) or it is stopped; what completed how is its result.
     */
    private static final class Writer implements Runnable {
        private final Hca far;
        private final Hca.HostBuffer src;
        private final int rkey;
        private final Thread thread;
        private volatile boolean stop;
        private volatile long successes;
        private volatile WcStatus error;
        private volatile RuntimeException failure;
        /** Statuses of the completions after the first error; read once the thread is joined. */
        private final Set<WcStatus> afterError = EnumSet.noneOf(WcStatus.class);

        Writer(Hca far, Hca.HostBuffer src, int rkey) {
            this.far = far;
            this.src = src;
            this.rkey = rkey;
            this.thread = Thread.ofPlatform().name("unplug-storm rxe1 writer").start(this);
        }

        @Override
        public void run() {
            try {
                long posted = 0;
                int outstanding = 0;
                long quiet = System.nanoTime();
                while (true) {
                    while (!stop && error == null && outstanding < WINDOW) {
                        long off = posted * MESSAGE % SIZE;
                        far.qp.postSend(new SendWr.RdmaWrite(posted, List.of(new Sge(src.addr() + off, MESSAGE,
                                src.mr().lkey())), SendFlags.SIGNALED, IOVA + off, rkey));
                        posted++;
                        outstanding++;
                    }
                    if ((stop || error != null) && outstanding == 0) {
                        return;
                    }
                    List<WorkCompletion> wcs = far.cq.poll(WINDOW);
                    for (WorkCompletion wc : wcs) {
                        outstanding--;
                        if (error != null) {
                            afterError.add(wc.status());
                        } else if (wc.status() == WcStatus.SUCCESS) {
                            successes++;
                        } else {
                            error = wc.status();
                        }
                    }
                    if (!wcs.isEmpty()) {
                        quiet = System.nanoTime();
                    } else if (System.nanoTime() - quiet > WAIT.toNanos()) {
                        throw new ErrnoException(Errno.ETIMEDOUT, "rxe1: no completion for " + WAIT.toSeconds()
                                + " s with " + outstanding + " writes outstanding");
                    } else {
                        Thread.onSpinWait();
                    }
                }
            } catch (RuntimeException e) {
                failure = e;
            }
        }

        /** Waits (bounded) until {@code n} writes completed successfully. */
        void awaitSuccesses(long n) {
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (successes < n && error == null && failure == null && thread.isAlive()) {
                assertTrue(System.nanoTime() < deadline, "rxe1 completed " + successes + " writes in "
                        + WAIT.toSeconds() + " s");
                Thread.onSpinWait();
            }
            assertTrue(successes >= n, "rxe1's writes went on before the unplug: " + successes + " done, error "
                    + error + ", failure " + failure);
        }

        /** Joins the thread (bounded): it ends by itself once a write fails; {@code stop} ends it otherwise. */
        void join(boolean stop) throws InterruptedException {
            this.stop |= stop;
            thread.join(WAIT.toMillis());
            if (thread.isAlive()) {
                this.stop = true;
                thread.join(WAIT.toMillis());
                throw new AssertionError("rxe1's writes did not end within " + WAIT.toSeconds() + " s of the unplug ("
                        + successes + " succeeded): the revoked region still took them");
            }
            if (failure != null) {
                throw new AssertionError("rxe1's writer failed", failure);
            }
        }
    }

    @Test
    void aHundredHotUnplugsUnderRdmaAndJobsLeaveNothing() throws Exception {
        Path file = Path.of(UnplugStormTest.class.getResource("/gpudirect-machine.yaml").toURI());
        try (Machine m = Machine.boot(TopologyLoader.load(file), Machine.Options.DEFAULT.withClassPathModels(false));
             GpuHost gpu = GpuHost.on(m); SoftRoceHost rxe = SoftRoceHost.on(m)) {
            assertEquals(List.of(), gpu.devices(), "no GPU before its model arrives");
            Set<String> threadsBefore = threads();
            Leftovers before = Leftovers.of(m, gpu.core(), rxe.core());
            byte[] payload = Stage.payload(SIZE, SEED);
            try (Hca near = new Hca(m, rxe.core(), GpuDirect.NEAR); Hca far = new Hca(m, rxe.core(), GpuDirect.FAR)) {
                Hca.HostBuffer src = far.host(SIZE);
                far.put(src, 0, MemorySegment.ofArray(payload));
                Leftovers connected = Leftovers.of(m, gpu.core(), rxe.core());
                int cancelled = 0;
                Map<WcStatus, Integer> ends = new EnumMap<>(WcStatus.class);
                for (int cycle = 1; cycle <= CYCLES; cycle++) {
                    reconnect(near, far);
                    cancelled += cycle(m, gpu, near, far, src, cycle, ends);
                    assertEquals(connected, Leftovers.of(m, gpu.core(), rxe.core()), "cycle " + cycle
                            + " left nothing");
                    assertEquals(Set.of(), gpuThreads(), "cycle " + cycle + ": no GPU thread left");
                }
                LOG.info("{} unplugs: {} jobs cancelled; rxe1's writes ended {}", CYCLES, cancelled, ends);
            }
            assertEquals(before, Leftovers.of(m, gpu.core(), rxe.core()), "nothing left after the storm");
            assertEquals(threadsBefore, threads(), "the threads are the ones before the storm");
            assertEquals(List.of(), m.dmaDebug().reports().stream().filter(r -> BAD_ACCESS.contains(r.kind())).toList(),
                    "dma-debug saw no stale or unmapped access");
        }
    }

    /** One hot-add, traffic, surprise removal; returns how many jobs the removal cancelled. */
    private static int cycle(Machine m, GpuHost host, Hca near, Hca far, Hca.HostBuffer src, int cycle,
                             Map<WcStatus, Integer> ends) throws InterruptedException {
        GpuModel model = new GpuModel();
        m.addModel(model);
        List<AccelDevice> devices = host.devices();
        assertEquals(1, devices.size(), "cycle " + cycle + ": the hot-added GPU is bound");
        AccelDevice device = devices.getFirst();
        List<Fence> jobs = new ArrayList<>();
        Gpu gpu = new Gpu(host.core(), GpuDirect.GPU_DRIVER);
        try {
            int vram = gpu.create(SIZE, Placement.VISIBLE_VRAM, false);
            int copy = gpu.create(SIZE, Placement.HOST, false);
            int crc = gpu.create(4096, Placement.HOST, false);
            DmaBuf buf = gpu.ctx.primeExport(vram);
            MemoryRegion mr = near.dmabufMr(buf, 0, SIZE, IOVA);
            try {
                Writer writer = new Writer(far, src, mr.rkey());
                boolean removed = false;
                try {
                    writer.awaitSuccesses(WINDOW);
                    jobs.add(gpu.ctx.submit(Submission.on(gpu.computeEngine, Command.Launch.of("spin"))));
                    for (int i = 0; i < CRCS; i++) {
                        jobs.add(gpu.ctx.submit(Submission.on(gpu.computeEngine, Command.Launch.of("crc32c",
                                gpu.va(vram), gpu.va(crc) + 4L * i, SIZE, 0)).reading(vram).writing(crc)));
                    }
                    for (int i = 0; i < COPIES; i++) {
                        jobs.add(gpu.copy(vram, 0, copy, 0, SIZE));
                    }
                    removed = m.removeModel(model);
                } finally {
                    writer.join(!removed);
                }
                assertTrue(removed, "cycle " + cycle + ": the GPU model was loaded");
                assertTrue(writer.successes >= WINDOW, "cycle " + cycle + ": rxe1 wrote before the unplug");
                assertTrue(WRITE_ENDS.contains(writer.error), "cycle " + cycle + ": rxe1's writes end with a "
                        + "remote access error (region revoked) or a remote operation error (the slot empty before "
                        + "the revoke), not " + writer.error);
                ends.merge(writer.error, 1, Integer::sum);
                assertTrue(Set.of(WcStatus.WR_FLUSH_ERR).containsAll(writer.afterError), "cycle " + cycle
                        + ": the writes behind it were flushed: " + writer.afterError);
                assertTrue(buf.isRevoked(), "cycle " + cycle + ": the GPU's dma-buf was revoked");
                reconnect(near, far);
                assertEquals(WcStatus.REM_ACCESS_ERR, writeOnce(far, src, mr.rkey()), "cycle " + cycle
                        + ": a write into the revoked region is a remote access error");
            } finally {
                mr.destroy();
                buf.put();
            }
            int cancelled = 0;
            for (int i = 0; i < jobs.size(); i++) {
                Fence f = jobs.get(i);
                assertTrue(f.await(WAIT), "cycle " + cycle + ": " + f + " signalled");
                Optional<Errno> e = f.error();
                if (i <= CRCS) {
                    assertEquals(Optional.of(Errno.ECANCELED), e, "cycle " + cycle + ": the spinning kernel and the "
                            + "CRC32C kernels behind it were cancelled: " + f);
                } else {
                    assertTrue(e.isEmpty() || e.get() == Errno.ECANCELED, "cycle " + cycle + ": " + f + " ended " + e);
                }
                cancelled += e.isPresent() ? 1 : 0;
            }
            assertEquals(List.of(), host.devices(), "cycle " + cycle + ": the accel device is gone");
            assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, device::open).errno(), "cycle " + cycle
                    + ": no context opens on the removed device");
            assertEquals(Errno.EIO, assertThrows(ErrnoException.class, () -> gpu.ctx.createBo(SIZE)).errno(),
                    "cycle " + cycle + ": the disassociated context refuses new objects");
            return cancelled;
        } finally {
            gpu.close();
        }
    }

    /** Both QPs back to RESET ({@code ibv_modify_qp}, from ERR too) and connected again, each aimed at the other. */
    private static void reconnect(Hca near, Hca far) {
        near.qp.modify(QpAttr.builder().state(QpState.RESET).build());
        far.qp.modify(QpAttr.builder().state(QpState.RESET).build());
        Hca.connect(near, far);
    }

    /** One signalled RDMA WRITE of rxe1 into {@code rkey}'s region; its completion status. */
    private static WcStatus writeOnce(Hca far, Hca.HostBuffer src, int rkey) {
        far.qp.postSend(new SendWr.RdmaWrite(-1, List.of(new Sge(src.addr(), MESSAGE, src.mr().lkey())),
                SendFlags.SIGNALED, IOVA, rkey));
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (true) {
            List<WorkCompletion> wcs = far.cq.poll(1);
            if (!wcs.isEmpty()) {
                return wcs.getFirst().status();
            }
            assertTrue(System.nanoTime() < deadline, "rxe1's write did not complete in " + WAIT.toSeconds() + " s");
            Thread.onSpinWait();
        }
    }

    private static Set<String> threads() {
        Set<String> names = new TreeSet<>();
        Thread.getAllStackTraces().keySet().stream().filter(Thread::isAlive).map(Thread::getName).forEach(names::add);
        return names;
    }

    private static Set<String> gpuThreads() {
        Set<String> names = threads();
        names.removeIf(n -> !GPU_THREAD.matcher(n).matches());
        return names;
    }
}
