package dev.dmaplane.benchmarks;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufMapping;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.Importer;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * The dma-buf core on the default machine, its 0000:03:00.0 served by the framework's {@code copyengine} model (the
 * GPU model lives in {@code drivers/gpu}; the benchmark needs only the function's VRAM BAR), dma-debug off as in
 * production; {@code trace} switches the machine's
 * trace ring on or off (every attach, map, unmap, detach and move_notify emits events).
 * <ul>
 *   <li>{@code heapAttachMapUnmapDetach}: a static importer's whole life on a 64 KiB system-heap buffer: attach,
 *       {@code mapUnlocked} (the sg table mapped through the IOMMU domain of HCA 05:00.0, which has a group of its
 *       own), {@code unmapUnlocked}, detach.</li>
 *   <li>{@code vramStaticAttachMapUnmapDetach}: the same for a static importer of the dynamic VRAM exporter's
 *       64 KiB buffer (in system memory since setup, so no copy in steady state): the attach judges the p2pdma
 *       distance, the map pins the buffer and waits for its {@code KERNEL} fences, the unmap unpins.</li>
 *   <li>{@code vramP2pAttachMapUnmapDetach}: a dynamic importer on HCA 04:00.0 under the GPU's switch, whose map of a
 *       buffer in VRAM hands out the bus address (p2pdma map type, peer window), under the reservation lock.</li>
 *   <li>{@code moveNotifyFanOut1000}: one {@code dma_buf_move_notify} (reservation lock taken and dropped) reaching
 *       1,000 dynamic importers attached to one VRAM buffer, each of which only counts the call.
 *       {@code listenerLoop1000} is its yardstick: the same 1,000 importer callbacks called in a plain loop.</li>
 * </ul>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class DmaBufBenchmark {
    private static final long SIZE = 64 * 1024;
    private static final int FAN_OUT = 1000;

    @Param({"false", "true"})
    public boolean trace;

    private Machine machine;
    private PciFunction nearHca;
    private PciFunction farHca;
    private DmaBuf heapBuf;
    private DmaBuf vramHostBuf;
    private DmaBuf vramBuf;
    private DmaBuf fanBuf;
    private Importer p2pImporter;
    private Importer[] importers;
    private Attachment[] fanAttachments;
    private long moves;

    @Setup(Level.Trial)
    public void boot() {
        String text = TopologyLoader.defaultMachineText().replace("model: gpu", "model: copyengine");
        machine = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), new Machine.Options(false, 4));
        machine.tracer().setEnabled(trace);
        DmaBufs bufs = DmaBufs.of(machine);
        nearHca = machine.pci().function("04:00.0");
        farHca = machine.pci().function("05:00.0");
        for (PciFunction f : new PciFunction[]{nearHca, farHca}) {
            f.setMaster(true);
            f.dma().setDmaMask(-1L);
        }
        heapBuf = new SystemHeap(bufs).allocate(SIZE);
        VramExporter vram = new VramExporter(bufs, P2pDma.of(machine), machine.pci().function("03:00.0"), 2,
                VramExporter.Policy.MIGRATE_TO_HOST);
        vramHostBuf = vram.allocate(SIZE);
        vramHostBuf.resv().lock();
        try {
            if (!vram.migrate(vramHostBuf, VramExporter.Target.HOST, "benchmark set-up").await(Duration.ofSeconds(10))) {
                throw new IllegalStateException("migration did not finish");
            }
        } finally {
            vramHostBuf.resv().unlock();
        }
        vramBuf = vram.allocate(SIZE);
        p2pImporter = new Importer(true, a -> moves++);

        fanBuf = vram.allocate(SIZE);
        importers = new Importer[FAN_OUT];
        fanAttachments = new Attachment[FAN_OUT];
        for (int i = 0; i < FAN_OUT; i++) {
            importers[i] = new Importer(true, a -> moves++);
            fanAttachments[i] = fanBuf.attach(nearHca, importers[i]);
        }
        moveNotifyFanOut1000();
        if (moves != FAN_OUT) {
            throw new IllegalStateException("move_notify reached " + moves + " of " + FAN_OUT + " importers");
        }
    }

    @TearDown(Level.Trial)
    public void shutdown() {
        for (Attachment a : fanAttachments) {
            fanBuf.detach(a);
        }
        machine.close();
    }

    @Benchmark
    public DmaBufMapping heapAttachMapUnmapDetach() {
        Attachment a = heapBuf.attach(farHca, null);
        DmaBufMapping m = heapBuf.mapUnlocked(a, DmaDirection.BIDIRECTIONAL);
        heapBuf.unmapUnlocked(m);
        heapBuf.detach(a);
        return m;
    }

    @Benchmark
    public DmaBufMapping vramStaticAttachMapUnmapDetach() {
        Attachment a = vramHostBuf.attach(farHca, null);
        DmaBufMapping m = vramHostBuf.mapUnlocked(a, DmaDirection.BIDIRECTIONAL);
        vramHostBuf.unmapUnlocked(m);
        vramHostBuf.detach(a);
        return m;
    }

    @Benchmark
    public DmaBufMapping vramP2pAttachMapUnmapDetach() {
        Attachment a = vramBuf.attach(nearHca, p2pImporter);
        DmaBufMapping m;
        vramBuf.resv().lock();
        try {
            m = vramBuf.map(a, DmaDirection.BIDIRECTIONAL);
            vramBuf.unmap(m);
        } finally {
            vramBuf.resv().unlock();
        }
        vramBuf.detach(a);
        return m;
    }

    @Benchmark
    public long moveNotifyFanOut1000() {
        fanBuf.resv().lock();
        try {
            return fanBuf.moveNotify();
        } finally {
            fanBuf.resv().unlock();
        }
    }

    @Benchmark
    public long listenerLoop1000() {
        for (int i = 0; i < FAN_OUT; i++) {
            importers[i].moveNotify(fanAttachments[i]);
        }
        return moves;
    }
}
