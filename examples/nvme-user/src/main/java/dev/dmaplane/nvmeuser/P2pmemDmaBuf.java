package dev.dmaplane.nvmeuser;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dma.SgEntry;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.ExportInfo;
import dev.dmaplane.dmabuf.Exporter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.p2pdma.P2pAllocation;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.p2pdma.P2pMapping;
import dev.dmaplane.p2pdma.P2pPath;

import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * A p2pmem allocation handed to the devices that DMA to it as a dma-buf: each importer's map is
 * {@code pci_p2pdma_map_sg} for that device ({@link P2pDma#mapSg}), as {@code rdma_rw_ctx_init} maps a p2pmem
 * scatterlist for the HCA and the block layer maps it for the NVMe. The model's verbs register memory for an HCA
 * only through a process address or a dma-buf (there is no {@code local_dma_lkey}), so the target registers the
 * allocation this way. The attach refuses an importer without peer-to-peer or one p2pdma finds no path to
 * ({@code EOPNOTSUPP}, naming {@code pci_p2pdma_distance}'s reason). The memory never moves: pin is a no-op. The
 * allocation stays the caller's, freed after the buffer's last reference went.
 */
final class P2pmemDmaBuf {
    private P2pmemDmaBuf() {
    }

    /**
     * Exports {@code allocation} as a dma-buf of its whole size.
     *
     * @throws ErrnoException the registry's errno
     */
    static DmaBuf export(DmaBufs registry, P2pDma p2p, P2pAllocation allocation) {
        Map<MappedSg, P2pMapping> mappings = Collections.synchronizedMap(new IdentityHashMap<>());
        Exporter ops = Exporter.builder()
                .attach((buf, a) -> attach(p2p, allocation, a))
                .map((a, dir) -> map(p2p, allocation, mappings, a, dir))
                .unmap((a, sg, dir) -> unmap(p2p, mappings, sg))
                .pin(a -> {
                })
                .unpin(a -> {
                })
                .cpuRead((buf, off, dst) -> allocation.read(off, dst))
                .cpuWrite((buf, off, src) -> allocation.write(off, src))
                .beginCpuAccess((buf, dir) -> {
                })
                .endCpuAccess((buf, dir) -> {
                })
                .release(buf -> {
                })
                .build();
        return registry.export(ExportInfo.of("p2pmem:" + allocation.provider().bdf(), allocation.size(), ops));
    }

    private static void attach(P2pDma p2p, P2pAllocation allocation, Attachment a) {
        if (!a.peer2peer()) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "p2pmem of " + allocation.provider().bdf() + " is reached only"
                    + " peer-to-peer, and importer " + a.device().name() + " does not allow peer-to-peer");
        }
        P2pPath path = p2p.distance(allocation.provider(), List.of(a.device())).paths().getFirst();
        if (path.mapType() == MapType.NOT_SUPPORTED) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "p2pmem of " + allocation.provider().bdf() + ": no peer-to-peer"
                    + " path to " + a.device().name() + " (pci_p2pdma_distance: " + path.reason() + ")");
        }
    }

    private static MappedSg map(P2pDma p2p, P2pAllocation allocation, Map<MappedSg, P2pMapping> mappings, Attachment a,
                                DmaDirection dir) {
        P2pMapping m = p2p.mapSg(a.device(), allocation, dir);
        MappedSg sg = new MappedSg(new SgTable(List.of(new SgEntry(allocation.busAddress(), allocation.size()))), dir,
                m.segments());
        mappings.put(sg, m);
        return sg;
    }

    private static void unmap(P2pDma p2p, Map<MappedSg, P2pMapping> mappings, MappedSg sg) {
        P2pMapping m = mappings.remove(sg);
        if (m == null) {
            throw new ErrnoException(Errno.EINVAL, "unmap of a p2pmem mapping this exporter did not make");
        }
        p2p.unmapSg(m);
    }
}
