package dev.dmaplane.dmabuf;

import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dmabuf.heap.VramExporter.Target;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.FenceOps;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.Blocked;
import dev.dmaplane.testing.TestMachines;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Moves and revocation as include/linux/dma-buf.h documents move_notify (mappings stay valid until the move's
 * fences signal, then must be re-created and point at the new place) and dma_buf_map_attachment (dynamic
 * importers wait for the KERNEL fence), with a TTM-like exporter whose buffers live in VRAM (the GPU's BAR2) and
 * migrate with real, checked copies; the revoke flow of the dma-buf revoke work (maps fail with ENODEV, no
 * device reaches the old backing); Documentation/driver-api/dma-buf.rst "Indefinite DMA Fences" for the rule
 * that the move's signalling path never waits for the reservation lock.
 */
class MoveRevokeTest {
    private static final int SIZE = 64 * 1024;

    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final DmaBufs bufs = DmaBufs.of(machine);
    private final PciFunction gpu = machine.pci().function("03:00.0");
    private final PciFunction hca = machine.pci().function("05:00.0");
    private final P2pDma p2p = P2pDma.of(machine);

    @AfterEach
    void close() {
        machine.close();
    }

    private static Errno errno(Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    private static byte[] pattern(int seed) {
        byte[] b = new byte[SIZE];
        for (int i = 0; i < SIZE; i++) {
            b[i] = (byte) (i * 31 + seed);
        }
        return b;
    }

    private byte[] deviceRead(DmaBufMapping m) {
        byte[] out = new byte[(int) m.length()];
        long off = 0;
        for (var s : m.segments()) {
            hca.dma().busMaster().read(s.dmaAddress(), MemorySegment.ofArray(out).asSlice(off, s.length()));
            off += s.length();
        }
        return out;
    }

    private void awaitKernel(DmaBuf buf) {
        assertTrue(buf.resv().await(ResvUsage.KERNEL, Duration.ofSeconds(10)));
    }

    @Test
    void importerSeesMigratedDataAndItsStaleMappingIsBlockedAndReported() throws Exception {
        VramExporter vram = new VramExporter(bufs, p2p, gpu, 2, VramExporter.Policy.MIGRATE_TO_HOST);
        DmaBuf buf = vram.allocate(SIZE);
        assertTrue(buf.isDynamic());
        assertEquals(Target.VRAM, vram.placement(buf).orElseThrow());
        buf.resv().lock();
        try {
            buf.cpuWrite(0, MemorySegment.ofArray(pattern(1)));
        } finally {
            buf.resv().unlock();
        }
        byte[] inBar = new byte[SIZE];
        gpu.bar(2).orElseThrow().memory().read(vram.vramOffset(buf), MemorySegment.ofArray(inBar));
        assertArrayEquals(pattern(1), inBar, "the bytes are in the GPU's BAR2");

        List<Attachment> notified = new ArrayList<>();
        long seq = machine.tracer().lastSeq();
        Attachment a = buf.attach(hca, new Importer(true, notified::add));
        assertFalse(a.peer2peer(), "across the root complex, without the host bridge on the whitelist");
        assertTrue(machine.tracer().since(seq).stream().anyMatch(e -> e.kind() == TraceKind.DMA_BUF
                && e.detail().contains("MIGRATE_TO_HOST")), "the exporter's choice is traced");
        assertEquals(Target.VRAM, vram.placement(buf).orElseThrow(), "as amdgpu, the attach only decides; the map moves");
        hca.setMaster(true);

        DmaBufMapping m;
        buf.resv().lock();
        try {
            m = buf.map(a, DmaDirection.BIDIRECTIONAL);
            assertEquals(List.of(a), notified, "the map's move told the importer too");
        } finally {
            buf.resv().unlock();
        }
        assertEquals(Target.HOST, vram.placement(buf).orElseThrow());
        awaitKernel(buf);
        notified.clear();
        assertArrayEquals(pattern(1), deviceRead(m), "VRAM -> host copy");

        Fence back;
        // the first waiter on the HCA's fence is the move thread (Fences.awaitAll enables signalling): remember it
        CompletableFuture<Thread> firstWaiter = new CompletableFuture<>();
        Fence hcaWork = FenceContext.allocate("hca", "rdma reads", machine.tracer(), new FenceOps() {
            @Override
            public boolean enableSignaling(Fence fence) {
                firstWaiter.complete(Thread.currentThread());
                return true;
            }
        }).createFence();
        buf.resv().lock();
        try {
            buf.resv().reserveFences(1);
            buf.resv().addFence(hcaWork, ResvUsage.READ);
            back = vram.migrate(buf, Target.VRAM, "test: back to VRAM");
            assertEquals(List.of(a), notified, "move_notify reached the dynamic importer");
        } finally {
            buf.resv().unlock();
        }
        Blocked.awaitBlockedIn(Blocked.get(firstWaiter), Blocked.CONDITION_AWAIT_NANOS, "dev.dmaplane.fence.impl.FenceCore.await",
                "dev.dmaplane.fence.Fences.awaitAll", "dev.dmaplane.dmabuf.heap.VramExporter.runMove");
        assertEquals(DmaBufMapping.State.MOVING, m.state(), "the move waits for the importer's work");
        assertFalse(back.isSignaled());
        assertArrayEquals(pattern(1), deviceRead(m), "the old mapping stays valid until the move fence signals");
        hcaWork.signal();
        assertTrue(back.await(Duration.ofSeconds(10)));
        assertTrue(back.error().isEmpty(), "the copy was verified");
        assertEquals(DmaBufMapping.State.STALE, m.state());
        assertEquals(Target.VRAM, vram.placement(buf).orElseThrow());
        DmaFaultException f = assertThrows(DmaFaultException.class, () -> deviceRead(m));
        assertEquals(m.busAddress(0), f.busAddr());
        List<DmaDebugReport> stale = machine.dmaDebug().reports(DmaDebugReport.Kind.ACCESS_REVOKED);
        assertEquals(1, stale.size());
        assertTrue(stale.getFirst().message().contains("dma-buf " + buf.ino()), stale.getFirst().message());

        buf.resv().lock();
        try {
            buf.cpuWrite(100, MemorySegment.ofArray(new byte[]{42, 43, 44}));
        } finally {
            buf.resv().unlock();
        }
        byte[] expect = pattern(1);
        expect[100] = 42;
        expect[101] = 43;
        expect[102] = 44;

        DmaBufMapping again;
        buf.resv().lock();
        try {
            buf.unmap(m);
            again = buf.map(a, DmaDirection.BIDIRECTIONAL);
        } finally {
            buf.resv().unlock();
        }
        awaitKernel(buf);
        assertEquals(Target.HOST, vram.placement(buf).orElseThrow(), "the map moved it where the HCA reaches it");
        assertArrayEquals(expect, deviceRead(again), "host -> VRAM -> host, with the CPU's change made in VRAM");
        assertEquals(2, notified.size());

        buf.resv().lock();
        try {
            buf.unmap(again);
        } finally {
            buf.resv().unlock();
        }
        buf.detach(a);
        buf.put();
        assertEquals(0, machine.activeDmaMappings());
        assertEquals(16L << 30, vram.freeVram(), "every VRAM range came back");
    }

    @Test
    void refusePolicyRefusesAttachWithEbusyAndPinnedBuffersDoNotMove() {
        VramExporter strict = new VramExporter(bufs, p2p, gpu, 2, VramExporter.Policy.REFUSE);
        DmaBuf buf = strict.allocate(SIZE);
        long seq = machine.tracer().lastSeq();
        assertEquals(Errno.EOPNOTSUPP, errno(() -> buf.attach(hca, null)), "a static importer takes no peer-to-peer addresses");
        assertEquals(Errno.EBUSY, errno(() -> buf.attach(hca, new Importer(true, x -> { }))),
                "an importer that would, but the fabric keeps out");
        assertTrue(buf.attachments().isEmpty());
        assertTrue(machine.tracer().since(seq).stream().anyMatch(e -> e.detail().contains("policy REFUSE")));

        buf.resv().lock();
        try {
            assertTrue(strict.migrate(buf, Target.HOST, "test").await(Duration.ofSeconds(10)));
        } finally {
            buf.resv().unlock();
        }
        awaitKernel(buf);
        Attachment stat = buf.attach(hca, null);
        DmaBufMapping m = buf.mapUnlocked(stat, DmaDirection.TO_DEVICE);
        assertEquals(1, stat.pinCount(), "a static importer pins a dynamic exporter's buffer while mapped");
        buf.resv().lock();
        try {
            assertEquals(Errno.EBUSY, errno(() -> strict.migrate(buf, Target.VRAM, "test")));
            assertEquals(Target.HOST, strict.placement(buf).orElseThrow());
        } finally {
            buf.resv().unlock();
        }
        assertEquals(Errno.EPERM, errno(() -> strict.migrate(buf, Target.VRAM, "no lock")));
        buf.unmapUnlocked(m);
        assertEquals(0, stat.pinCount());
        buf.detach(stat);
        buf.put();
    }

    /**
     * Revoke while a device reads through its mapping on another thread: the reader ends in bounded time, nothing
     * crashes, and from the revoke on every access faults; maps fail with ENODEV.
     */
    @Test
    void revokeUnderConcurrentAccessCutsEveryDeviceOff() throws Exception {
        VramExporter vram = new VramExporter(bufs, p2p, gpu, 2, VramExporter.Policy.MIGRATE_TO_HOST);
        DmaBuf buf = vram.allocate(SIZE);
        buf.resv().lock();
        try {
            buf.cpuWrite(0, MemorySegment.ofArray(pattern(7)));
        } finally {
            buf.resv().unlock();
        }
        List<Attachment> notified = new ArrayList<>();
        Attachment a = buf.attach(hca, new Importer(false, notified::add));
        hca.setMaster(true);
        DmaBufMapping m;
        buf.resv().lock();
        try {
            m = buf.map(a, DmaDirection.BIDIRECTIONAL);
        } finally {
            buf.resv().unlock();
        }
        awaitKernel(buf);
        assertEquals(List.of(a), notified, "the map moved the buffer to system memory and said so");
        notified.clear();
        long frames = machine.memory().allocatedFrames();

        CountDownLatch reading = new CountDownLatch(1);
        AtomicLong goodReads = new AtomicLong();
        AtomicReference<Throwable> end = new AtomicReference<>();
        Thread reader = Thread.ofPlatform().name("hca-reader").start(() -> {
            byte[] want = pattern(7);
            try {
                for (int i = 0; i < 1_000_000; i++) {
                    byte[] got = deviceRead(m);
                    if (!Arrays.equals(want, got)) {
                        // a read that raced with the revoke may see pages already given back; it is not a crash
                        continue;
                    }
                    goodReads.incrementAndGet();
                    reading.countDown();
                }
                end.set(new AssertionError("the reader never faulted"));
            } catch (DmaFaultException fault) {
                end.set(fault);
            } catch (Throwable t) {
                end.set(t);
            }
        });
        assertTrue(reading.await(10, TimeUnit.SECONDS));
        buf.resv().lock();
        try {
            vram.revoke(buf, "test: device reset");
            assertEquals(Errno.ENODEV, errno(() -> buf.map(a, DmaDirection.TO_DEVICE)));
            assertEquals(Errno.ENODEV, errno(() -> buf.cpuRead(0, MemorySegment.ofArray(new byte[8]))));
        } finally {
            buf.resv().unlock();
        }
        reader.join(TimeUnit.SECONDS.toMillis(10));
        assertFalse(reader.isAlive(), "the reader ended in bounded time");
        assertInstanceOf(DmaFaultException.class, end.get());
        assertTrue(goodReads.get() > 0);
        assertEquals(List.of(a), notified, "the importer was told");
        assertEquals(DmaBufMapping.State.STALE, m.state());
        for (long off = 0; off < SIZE; off += 4096) {
            long at = m.busAddress(off);
            assertThrows(DmaFaultException.class, () -> hca.dma().busMaster().readLong(at));
        }
        assertEquals(frames - SIZE / 4096, machine.memory().allocatedFrames(), "the host backing was freed");
        assertTrue(vram.placement(buf).isEmpty());
        assertTrue(machine.dmaDebug().reports(DmaDebugReport.Kind.ACCESS_REVOKED).size() >= SIZE / 4096);

        buf.resv().lock();
        try {
            buf.unmap(m);
        } finally {
            buf.resv().unlock();
        }
        assertEquals(0, machine.activeDmaMappings(hca), "the importer's unmap freed the IOVA it kept");
        assertTrue(bufs.bufinfo().contains("revoked"));
        buf.detach(a);
        buf.put();
    }
}
