package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.accel.Command;
import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.Submission;
import dev.dmaplane.accel.sched.SchedEntity;
import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.dmaengine.DmaChannel;
import dev.dmaplane.dmaengine.DmaResult;
import dev.dmaplane.dmaengine.DmaTxDescriptor;
import dev.dmaplane.dmaengine.DmaTxResult;
import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Surprise removal under traffic ({@code pci_stop_and_remove_bus_device}; amdgpu's {@code amdgpu_pci_remove} with
 * {@code drm_dev_unplug}, {@code drm_sched_fini} cancelling what is left, {@code dmaengine_terminate_sync} for the
 * channel): every fence signals, jobs that did not run end ECANCELED, the hung one included, and the driver leaves
 * no vector, thread, coherent buffer or mapping of its own; the model's engine threads are still running while the
 * driver is removed by {@code hotUnplug}.
 */
class GpuUnplugTest {
    /** A job timeout far beyond the tests: a reset would end the hung SPINs with ETIME, not the removal. */
    private final DriverRig rig = new DriverRig(GpuOptions.DEFAULT.withRingEntries(64)
            .withJobTimeout(Duration.ofSeconds(120)));
    private final List<Fence> fences = Collections.synchronizedList(new ArrayList<>());
    private final AtomicReference<String> atUnbind = new AtomicReference<>();

    @AfterEach
    void close() {
        rig.close();
    }

    /** Traffic: a hung job on compute, copies queued beyond the ring on ce0, a submitter thread, dma transactions. */
    private Thread traffic(List<CompletableFuture<DmaTxResult>> dma) {
        BoundGpu gpu = rig.gpu();
        DriverRig.HostBuffer src = rig.host(256 * 1024);
        SchedEntity compute = gpu.entity(ENGINE_COMPUTE, SchedPriority.NORMAL);
        fences.add(gpu.submit(compute, GpuJob.of(new GpuCommand.Spin(0))));
        fences.add(gpu.submit(compute, GpuJob.of(new GpuCommand.Spin(0))));
        SchedEntity copy = gpu.entity(ENGINE_CE0, SchedPriority.NORMAL);
        for (int i = 0; i < 150; i++) {
            fences.add(gpu.submit(copy, GpuJob.of(new GpuCommand.Copy(0, src.run().gpuAddress(), (long) i << 20,
                    256 * 1024))));
        }
        DmaChannel ch = gpu.dmaChannel();
        DriverRig.HostBuffer dst = rig.host(4096);
        for (int i = 0; i < 20; i++) {
            DmaTxDescriptor d = ch.prepMemset(dst.bus(), i, 4096, DmaChannel.PREP_INTERRUPT);
            CompletableFuture<DmaTxResult> r = new CompletableFuture<>();
            d.setCallback(r::complete);
            d.submit();
            dma.add(r);
        }
        ch.issuePending();
        SchedEntity other = gpu.entity(ENGINE_CE1, SchedPriority.HIGH);
        // no window on its outstanding jobs: thousands may be queued when the scheduler's fini kills the entity
        Thread submitter = Thread.ofPlatform().name("gpu-test-submitter").start(() -> {
            for (int i = 0; i < 100_000; i++) {
                try {
                    Fence f = gpu.submit(other, GpuJob.of(new GpuCommand.Fill(0, 0x10_0000, 4096, i)));
                    fences.add(f);
                } catch (ErrnoException e) {
                    return; // the scheduler finished: ECANCELED on arm
                }
            }
        });
        try {
            rig.machine.devices().onUnbind(d -> {
                if (d == rig.fn) {
                    atUnbind.set(DriverRig.gpuThreads() + " vectors=" + IrqVectors.of(rig.fn).isPresent());
                }
            });
        } catch (RuntimeException e) {
            throw new AssertionError(e);
        }
        return submitter;
    }

    private void assertEverythingEnded(Thread submitter, List<CompletableFuture<DmaTxResult>> dma) throws Exception {
        submitter.join(DriverRig.WAIT.toMillis());
        assertFalse(submitter.isAlive(), "the submitter saw the scheduler finish");
        assertEquals("[] vectors=false", atUnbind.get(), "at unbind no driver thread, no vector");
        List<DmaDebugReport> leaks = rig.machine.dmaDebug().reports(DmaDebugReport.Kind.LEAK_AT_UNBIND);
        assertEquals(2, leaks.size(), "only the test's own two buffers were left mapped: " + leaks);
        leaks.forEach(l -> assertTrue(l.message().contains("dma_map_single"), l.message()));
        assertEquals(List.of(), rig.machine.dmaDebug().reports(DmaDebugReport.Kind.ACCESS_UNMAPPED),
                "the engines were stopped before the rings were freed");
        int cancelled = 0;
        for (Fence f : fences) {
            assertTrue(f.isSignaled(), f + " signalled");
            Optional<Errno> e = f.error();
            assertTrue(e.isEmpty() || e.get() == Errno.ECANCELED, f + " ended " + e);
            cancelled += e.isPresent() ? 1 : 0;
        }
        assertEquals(Optional.of(Errno.ECANCELED), fences.getFirst().error(), "the hung job was cancelled");
        assertTrue(cancelled > 2, cancelled + " cancelled");
        for (CompletableFuture<DmaTxResult> r : dma) {
            DmaResult res = r.get(DriverRig.WAIT.toSeconds(), TimeUnit.SECONDS).result();
            assertTrue(res == DmaResult.NOERROR || res == DmaResult.ABORTED, res.toString());
        }
        assertEquals(List.of(), DriverRig.gpuThreads());
        assertEquals(0, rig.fn.devres().size());
        rig.freeBuffers();
        assertEquals(rig.framesAtBoot, rig.machine.memory().allocatedFrames(), "every host frame back");
    }

    /**
     * A device gone from the bus reads all ones (what {@code removeModel} leaves between quiescing the model and
     * removing the driver, reproduced here by turning memory decoding off): a job run then is cancelled, not taken
     * for a full ring ({@code EBUSY}) or a halt.
     */
    @Test
    void aJobRunWhileTheGpuReadsAllOnesIsCancelled() {
        BoundGpu gpu = rig.gpu();
        SchedEntity copy = gpu.entity(ENGINE_CE0, SchedPriority.NORMAL);
        rig.fn.setMemorySpace(false);
        Fence f = gpu.submit(copy, GpuJob.of(new GpuCommand.Fill(0, 0, 4096, 1)));
        DriverRig.await(f);
        assertEquals(Optional.of(Errno.ECANCELED), f.error());
        rig.fn.setMemorySpace(true);
        Fence after = gpu.submit(copy, GpuJob.of(new GpuCommand.Fill(0, 0, 4096, 1)));
        DriverRig.await(after);
        assertEquals(Optional.empty(), after.error(), "back on the bus, the engine serves jobs again");
    }

    /**
     * The interleaving behind an EBUSY seen once on a user job at model removal. The datasheet ({@code GpuRegs}: the
     * engine writes the fence word, then advances {@code RING_HEAD}) and {@code removeModel} quiescing the engine
     * between the two leave the write-back saying a job is done while the head still covers its slot; a handler
     * running late then reaps it. Returning its ring credits to drm_sched there let the next job in, and
     * {@code Ring.emit} found the ring full ({@code EBUSY}). Forced here: a full ring of SPINs on compute, the first
     * job's seqno written to the fence word in the engine's stead, the threaded handler run on this thread. The job
     * stays on the ring, the next stays queued, and the model's removal cancels them all with ECANCELED.
     */
    @Test
    void aWriteBackAheadOfTheHeadReturnsNoRingSlot() {
        BoundGpu gpu = rig.gpu();
        GpuEngine engine = gpu.engine(ENGINE_COMPUTE);
        Ring ring = engine.ring();
        SchedEntity compute = gpu.entity(ENGINE_COMPUTE, SchedPriority.NORMAL);
        List<Fence> jobs = new ArrayList<>();
        for (int i = 0; i <= ring.entries(); i++) {
            jobs.add(gpu.submit(compute, GpuJob.of(new GpuCommand.Spin(0))));
        }
        eventually(() -> gpu.scheduler(ENGINE_COMPUTE).creditCount() == ring.entries(), DriverRig.WAIT,
                "the first " + ring.entries() + " jobs fill the ring");
        ring.memory().cpu().set(GpuCommand.U64, (long) ring.entries() * DESC_SIZE, 1L);
        engine.onInterrupt();
        assertFalse(jobs.getFirst().isSignaled(), "a job whose slot the head still covers left the ring: "
                + jobs.getFirst().error());
        assertEquals(ring.entries(), gpu.scheduler(ENGINE_COMPUTE).creditCount(), "no ring credit came back");
        assertTrue(rig.machine.removeModel(rig.model));
        for (Fence f : jobs) {
            DriverRig.await(f);
            assertEquals(Optional.of(Errno.ECANCELED), f.error(), f.toString());
        }
    }

    /**
     * The hardware gone before the driver's remove ({@code pci_dev_is_disconnected}): no job on it will finish, so
     * the driver finishes its schedulers before it unregisters ({@code accel.spi} package docs; amdgpu's
     * {@code amdgpu_fence_driver_hw_fini} force-completes the fences of an unplugged device instead of waiting).
     * The core's revoke of an exported object ({@code Documentation/driver-api/dma-buf.rst}: the exporter waits for
     * the reservation's fences before the backing goes) then finds the hung job writing it already cancelled; it
     * waited for the fence until the dma-buf core's 10 s timeout before, a storm of unplugs under traffic stalling
     * on every cycle.
     */
    @Test
    void theModelLeavingCancelsJobsOnAnExportedObjectBeforeItsRevoke() throws Exception {
        removalCancelsTheHungJobBeforeTheRevoke(() -> assertTrue(rig.machine.removeModel(rig.model)));
    }

    /**
     * The same with the hardware still in the slot while the driver goes ({@code amdgpu_pci_remove} calls
     * {@code drm_dev_unplug} first either way, and {@code amdgpu_fence_driver_hw_fini} then force-completes instead
     * of waiting for the rings): a surprise removal, whose driver is removed before the function's config space goes,
     * and below an unbind. The revoke waited for the hung job until the dma-buf core's timeout before, 29 s a removal.
     */
    @Test
    void hotUnplugCancelsAJobOnAnExportedObjectBeforeItsRevoke() throws Exception {
        removalCancelsTheHungJobBeforeTheRevoke(() -> rig.machine.hotUnplug(rig.fn));
    }

    @Test
    void anUnbindCancelsAJobOnAnExportedObjectBeforeItsRevoke() throws Exception {
        removalCancelsTheHungJobBeforeTheRevoke(() -> rig.machine.devices().unregisterDriver(rig.driver));
    }

    private void removalCancelsTheHungJobBeforeTheRevoke(Runnable removal) throws Exception {
        AccelContext ctx = AccelCore.of(rig.machine).open(rig.gpu().accelName());
        int bo = ctx.createBo(1 << 20, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));
        DmaBuf buf = ctx.primeExport(bo);
        Fence spin = ctx.submit(Submission.on(ENGINE_COMPUTE, Command.Launch.of("spin")).writing(bo));
        AtomicReference<String> atRevoke = new AtomicReference<>();
        String revoke = "revoke dma-buf " + buf.ino() + ":";
        try (AutoCloseable sub = rig.machine.tracer().subscribe(e -> {
            if (e.kind() == TraceKind.DMA_BUF && e.detail().startsWith(revoke)) {
                atRevoke.set(spin.isSignaled() + " " + spin.error());
            }
        })) {
            removal.run();
        }
        assertEquals("true " + Optional.of(Errno.ECANCELED), atRevoke.get(),
                "the hung job was cancelled before the object's dma-buf was revoked");
        assertTrue(buf.isRevoked());
        buf.put();
        ctx.close();
        assertEquals(List.of(), DriverRig.gpuThreads());
    }

    @Test
    void hotUnplugUnderTrafficCancelsAndLeavesNothing() throws Exception {
        List<CompletableFuture<DmaTxResult>> dma = new ArrayList<>();
        Thread submitter = traffic(dma);
        rig.machine.hotUnplug(rig.fn);
        assertEverythingEnded(submitter, dma);
        assertEquals(Optional.empty(), rig.driver.gpu(DriverRig.GPU));
    }

    @Test
    void theModelLeavingUnderTrafficIsTheSame() throws Exception {
        List<CompletableFuture<DmaTxResult>> dma = new ArrayList<>();
        Thread submitter = traffic(dma);
        assertTrue(rig.machine.removeModel(rig.model));
        assertEverythingEnded(submitter, dma);
    }
}
