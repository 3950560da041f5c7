package dev.dmaplane.gpudirect;

import dev.dmaplane.accel.Placement;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.trace.TraceEvent;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * [2] No peer-to-peer path ({@code drivers/pci/p2pdma.c} {@code calc_map_type_and_dist}, {@code amdgpu_dma_buf_attach}
 * and {@code amdgpu_dma_buf_map}): rxe1, on the other root port, registers the object rxe0 holds. Without a
 * whitelisted host bridge p2pdma says NOT_SUPPORTED, the attachment loses {@code peer2peer}, and the map moves the
 * object to host memory (rxe0's dynamic mapping is invalidated by {@code move_notify} and faults in again); with
 * {@code p2pAllowed: true} the object stays in VRAM, mapped for rxe1 through the host bridge and its IOMMU.
 */
final class NoPeerPath {
    static final long IOVA = 0x7c00_0000_0000L;

    private NoPeerPath() {
    }

    static void run(Stage s, PeerToPeer.Shared shared) {
        Printout out = s.out;
        long size = s.cfg.size();
        out.section(Scenario.NO_P2P, "no peer-to-peer path: rxe1 (" + GpuDirect.FAR_BDF + ", on the other root port)"
                + " registers the same object");
        long seq = s.machine.tracer().lastSeq();
        MemoryRegion farMr = s.far.dmabufMr(shared.buf(), 0, size, IOVA);
        try {
            List<TraceEvent> why = s.traced(seq, GpuDirect.FAR_BDF);
            Placement now = s.gpu.ctx.info(shared.handle()).placement();
            boolean viaHostBridge = why.stream().anyMatch(e -> e.detail().contains("THRU_HOST_BRIDGE"));
            if (viaHostBridge) {
                out.check(now == Placement.VISIBLE_VRAM, "the host bridge is whitelisted (p2pAllowed): the object stays "
                        + "in VRAM, mapped for rxe1 at an IOVA of its IOMMU domain (now %s)", now);
            } else {
                out.check(now == Placement.HOST, "the object moved to host memory for rxe1 (now %s)", now);
                out.check(why.stream().anyMatch(e -> e.detail().contains("without peer-to-peer (")),
                        "the trace names p2pdma's reason for refusing peer-to-peer");
            }
            // rxe1 reads the object through its own region (its IOMMU maps the object's new pages) into rxe0's view
            Hca.HostBuffer landing = s.near.host(size);
            s.far.write(farMr.iova(), farMr.lkey(), landing.mr().iova(), landing.mr().rkey(), size, s.cfg.message());
            byte[] got = new byte[(int) size];
            s.near.get(landing, 0, MemorySegment.ofArray(got));
            out.check(Stage.same(got, shared.expected(), 0), "rxe1 sent the %d MiB from its region of the object to "
                    + "rxe0: every byte as the GPU left it", size >> 20);
            s.far.read(s.back.addr(), s.back.mr().lkey(), PeerToPeer.IOVA, shared.mr().rkey(), size, s.cfg.message());
            out.check(Stage.same(s.readBack(0, (int) size), shared.expected(), 0),
                    "rxe0's region follows the object (move_notify, then a new map): rxe1 reads the same bytes through it");
            int crc = s.gpu.crc32c(shared.handle(), 0, size);
            out.check(crc == Stage.crc32c(shared.expected(), 0, (int) size),
                    "the GPU's CRC32C of the object where it is now: %08x, the same", crc);
        } finally {
            farMr.destroy();
        }
    }
}
