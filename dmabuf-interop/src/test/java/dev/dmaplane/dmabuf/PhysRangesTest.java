package dev.dmaplane.dmabuf;

import dev.dmaplane.device.FauxDevice;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.dmabuf.heap.VramExporter.Policy;
import dev.dmaplane.dmabuf.heap.VramExporter.Target;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MachineFiles;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.dmabuf.ResvLocked.locked;
import static dev.dmaplane.dmabuf.ResvLocked.lockedGet;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The physical address list of a dma-buf for an importer that maps it into an IOMMU domain of its own, after the
 * revocable-dma-buf direction of recent kernels: iommufd's {@code iopt_map_dmabuf} (drivers/iommu/iommufd/pages.c)
 * attaches with {@code iopt_dmabuf_attach_revoke_ops}, gets a {@code struct dma_buf_phys_vec} from
 * {@code vfio_pci_dma_buf_iommufd_map} (drivers/vfio/pci/vfio_pci_dmabuf.c), which answers {@code EOPNOTSUPP} for
 * every other exporter and {@code ENODEV} once revoked, and takes {@code move_notify} as revoke
 * ({@code iopt_revoke_notify}). Here the GPU VRAM exporter gives its VRAM range too (beyond today's kernel); a heap
 * gives none. The default machine's GPU 03:00.0 exports; the importer is a faux device (drivers/base/faux.c), as
 * iommufd's global device is.
 */
class PhysRangesTest {
    private static final int SIZE = 64 * 1024;

    private final MachineFiles files = new MachineFiles();
    private final Machine m = files.boot();
    private final DmaBufs bufs = DmaBufs.of(m);
    private final PciFunction gpu = m.pci().function("03:00.0");
    private final VramExporter ex = new VramExporter(bufs, P2pDma.of(m), gpu, 2, Policy.REFUSE);
    private final FauxDevice iommufd = FauxDevice.create("iommufd");
    private final List<Attachment> revoked = new ArrayList<>();

    @AfterEach
    void close() {
        files.close();
    }

    private static Errno errno(Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    @Test
    void vramGivesItsBarRangeAndAMoveRevokesTheImporter() {
        DmaBuf buf = ex.allocate(SIZE);
        Attachment a = buf.attach(iommufd, Importer.physical(revoked::add));
        assertTrue(a.peer2peer(), "the REFUSE policy does not judge an IOMMU importer's faux device");
        long bar = gpu.bar(2).orElseThrow().address();
        assertEquals(List.of(new PhysVec(bar + ex.vramOffset(buf), SIZE)), lockedGet(buf, () -> buf.physRanges(a)));
        assertEquals(Errno.EPERM, errno(() -> buf.physRanges(a)), "without the reservation lock");

        locked(buf, () -> assertTrue(ex.migrate(buf, Target.HOST, "test: evict").await(Duration.ofSeconds(10))));
        assertEquals(List.of(a), revoked, "the move told the importer before the VRAM was let go");
        assertEquals(Errno.EOPNOTSUPP, errno(() -> locked(buf, () -> buf.physRanges(a))), "in system memory");
        locked(buf, () -> assertTrue(ex.migrate(buf, Target.VRAM, "test: back").await(Duration.ofSeconds(10))));
        assertEquals(SIZE, lockedGet(buf, () -> buf.physRanges(a)).getFirst().length(), "in VRAM again");

        locked(buf, () -> ex.revoke(buf, "test: GPU reset"));
        assertEquals(List.of(a, a, a), revoked, "the second move and the revoke told it too");
        assertEquals(Errno.ENODEV, errno(() -> locked(buf, () -> buf.physRanges(a))), "revoked");
        buf.detach(a);
        buf.put();
    }

    @Test
    void aHeapGivesNoRangesAndOnlyAPhysicalImporterMayAsk() {
        DmaBuf heap = new SystemHeap(bufs).allocate(4096);
        Attachment a = heap.attach(iommufd, Importer.physical(revoked::add));
        assertEquals(Errno.EOPNOTSUPP, errno(() -> locked(heap, () -> heap.physRanges(a))), "a heap");
        heap.detach(a);
        heap.put();

        DmaBuf buf = ex.allocate(SIZE);
        Attachment dynamic = buf.attach(m.pci().function("04:00.0"), new Importer(true, revoked::add));
        assertEquals(Errno.EINVAL, errno(() -> locked(buf, () -> buf.physRanges(dynamic))),
                "an sg_table importer, whose move_notify does not mean revoke");
        buf.detach(dynamic);
        buf.put();
    }
}
