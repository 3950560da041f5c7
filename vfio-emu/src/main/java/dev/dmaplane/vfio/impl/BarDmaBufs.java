package dev.dmaplane.vfio.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dma.SgEntry;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.ExportInfo;
import dev.dmaplane.dmabuf.Exporter;
import dev.dmaplane.dmabuf.Importer;
import dev.dmaplane.dmabuf.PhysVec;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.p2pdma.P2pPath;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.trace.TraceKind;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioUapi.*;

/**
 * The dma-bufs a vfio-pci device exported of its BARs ({@code drivers/vfio/pci/vfio_pci_dmabuf.c}): each a list of
 * page-aligned ranges of one BAR, reachable only peer-to-peer (the attach refuses an importer without
 * {@code peer2peer}, or one p2pdma finds no path to, with {@code EOPNOTSUPP}; there is nothing to pin or move).
 * While the device does not decode memory (the user cleared Memory Space Enable, a reset is under way) every buffer
 * is revoked ({@code vfio_pci_dma_buf_move}): importers are told, their device access is cut and maps fail with
 * {@code ENODEV}; when decoding comes back they are told again and map anew. The last close of the device, or its
 * removal, revokes them for good ({@code vfio_pci_dma_buf_cleanup}) and tears down any mapping an importer kept.
 * <p>
 * Locks: this object's monitor is the device's {@code memory_lock} for the buffers (held across a whole move, so two
 * moves never interleave), taken before each buffer's reservation lock.
 */
final class BarDmaBufs {
    private static final Logger LOG = LoggerFactory.getLogger(BarDmaBufs.class);
    private static final long PAGE = 4096;

    private final VfioPciDevice dev;
    private final PciFunction fn;
    /** The buffers exported and not released, {@code vdev->dmabufs}; guarded by this. */
    private final Set<Exported> live = new LinkedHashSet<>();

    BarDmaBufs(VfioPciDevice dev) {
        this.dev = dev;
        this.fn = dev.function();
    }

    /** One exported buffer ({@code struct vfio_pci_dma_buf}). */
    private final class Exported {
        final int bar;
        final List<PhysVec> ranges;
        DmaBuf dmabuf;
        /** Guarded by the buffer's reservation lock, read by map under it. */
        volatile boolean revoked;
        /** Set once the device let it go for good: maps stay refused. */
        volatile boolean gone;
        /** How each mapping handed out was made, by identity. */
        final Map<MappedSg, MapType> types = Collections.synchronizedMap(new IdentityHashMap<>());

        Exported(int bar, List<PhysVec> ranges) {
            this.bar = bar;
            this.ranges = List.copyOf(ranges);
        }
    }

    /**
     * {@code vfio_pci_core_feature_dma_buf} after {@code vfio_check_feature} passed for GET: reads the
     * {@code struct vfio_device_feature_dma_buf} at {@code arg} with its {@code nr_ranges} ranges and exports them.
     *
     * @param arg   the feature's data, {@code argsz} bytes the user declared
     * @param argsz the bytes after the feature header ({@code feature.argsz - minsz})
     * @return the new buffer, with the one reference the fd will hold
     * @throws ErrnoException {@code EFAULT} for data past the user's buffer; {@code EINVAL} for no ranges, non-zero
     *                        flags, a range of length 0, an unaligned offset or length, lengths that overflow, a BAR
     *                        the function does not implement or a range past the BAR's end; {@code ENODEV} for a
     *                        region index past the BARs, or a device that left vfio-pci; {@code EOVERFLOW} when a
     *                        range's bus address overflows
     */
    DmaBuf export(MemorySegment arg, long argsz) {
        if (arg.byteSize() < FEATURE_DMA_BUF.byteSize()) {
            throw new ErrnoException(Errno.EFAULT, dev.name() + ": VFIO_DEVICE_FEATURE_DMA_BUF: copy_from_user of "
                    + FEATURE_DMA_BUF.byteSize() + " bytes from " + arg.byteSize());
        }
        int index = u32(arg, FEATURE_DMA_BUF, "region_index");
        int flags = u32(arg, FEATURE_DMA_BUF, "flags");
        long nr = Integer.toUnsignedLong(u32(arg, FEATURE_DMA_BUF, "nr_ranges"));
        String what = dev.name() + ": VFIO_DEVICE_FEATURE_DMA_BUF of region " + Integer.toUnsignedString(index);
        if (nr == 0 || flags != 0) {
            throw new ErrnoException(Errno.EINVAL, what + ": nr_ranges " + nr + ", flags " + Integer.toHexString(flags)
                    + " (at least one range and no flags)");
        }
        if (Integer.compareUnsigned(index, VFIO_PCI_ROM_REGION_INDEX) >= 0) {
            throw new ErrnoException(Errno.ENODEV, what + ": only BARs 0-5 are exported");
        }
        long need = FEATURE_DMA_BUF.byteSize() + nr * REGION_DMA_RANGE.byteSize();
        if (arg.byteSize() < need) {
            throw new ErrnoException(Errno.EFAULT, what + ": memdup_array_user of " + nr + " ranges reads past the "
                    + arg.byteSize() + "-byte buffer");
        }
        long total = 0;
        long[][] ranges = new long[(int) nr][];
        for (int i = 0; i < nr; i++) {
            long at = FEATURE_DMA_BUF.byteSize() + i * REGION_DMA_RANGE.byteSize();
            long off = arg.get(U64, at);
            long len = arg.get(U64, at + 8);
            if (len == 0 || (off & (PAGE - 1)) != 0 || (len & (PAGE - 1)) != 0) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: range %d (offset %#x, length %#x) is empty"
                        + " or not page-aligned (validate_dmabuf_input)", what, i, off, len));
            }
            long sum = total + len;
            if (Long.compareUnsigned(sum, total) < 0 || sum < 0) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: the lengths overflow at range %d (%#x)",
                        what, i, len));
            }
            total = sum;
            ranges[i] = new long[]{off, len};
        }
        Bar bar = fn.bar(index).orElseThrow(() -> new ErrnoException(Errno.EINVAL, what
                + ": the function has no such BAR, so no p2pdma provider (pcim_p2pdma_provider)"));
        List<PhysVec> phys = fillPhysVec(what, bar, ranges);
        dev.requirePresent("VFIO_DEVICE_FEATURE_DMA_BUF");
        Exported e = new Exported(index, phys);
        DmaBufs registry = dev.core().dmaBufs();
        synchronized (this) {
            e.dmabuf = registry.export(ExportInfo.of("vfio-pci:" + dev.name(), total, ops(e)).withPriv(e));
            e.dmabuf.resv().lock();
            try {
                e.revoked = !fn.configSpace().memorySpaceEnabled();
            } finally {
                e.dmabuf.resv().unlock();
            }
            live.add(e);
        }
        dev.core().machine().tracer().emit(TraceKind.DMA_BUF, dev.name(), -1, total, "vfio-pci exports "
                + phys.size() + " range(s) of BAR " + index + " as dma-buf " + e.dmabuf.ino()
                + (e.revoked ? " (revoked: memory decoding is off)" : ""));
        return e.dmabuf;
    }

    /**
     * {@code vfio_pci_core_fill_phys_vec}: each range's bus address from the BAR's start; an address that overflows
     * is {@code EOVERFLOW}, a range that ends past the BAR {@code EINVAL}.
     */
    private static List<PhysVec> fillPhysVec(String what, Bar bar, long[][] ranges) {
        long start = bar.address();
        long max = start + bar.size();
        List<PhysVec> out = new ArrayList<>(ranges.length);
        for (int i = 0; i < ranges.length; i++) {
            long paddr = start + ranges[i][0];
            long end = paddr + ranges[i][1];
            if (Long.compareUnsigned(paddr, start) < 0 || Long.compareUnsigned(end, paddr) < 0) {
                throw new ErrnoException(Errno.EOVERFLOW, String.format("%s: range %d (offset %#x, length %#x) "
                        + "overflows from the BAR's bus address %#x", what, i, ranges[i][0], ranges[i][1], start));
            }
            if (Long.compareUnsigned(end, max) > 0) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: range %d (offset %#x, length %#x) ends past"
                        + " the BAR's %#x bytes", what, i, ranges[i][0], ranges[i][1], bar.size()));
            }
            out.add(new PhysVec(paddr, ranges[i][1]));
        }
        return out;
    }

    private Exporter ops(Exported e) {
        return Exporter.builder()
                .attach((buf, a) -> attach(e, a))
                .map((a, dir) -> map(e, a, dir))
                .unmap((a, sg, dir) -> unmap(e, a, sg, dir, null))
                .revokeMapping((a, sg, dir, why) -> unmap(e, a, sg, dir, why))
                .pin(a -> {
                    throw new ErrnoException(Errno.EOPNOTSUPP, dev.name() + ": a vfio-pci dma-buf cannot be pinned:"
                            + " it must stay revocable (vfio_pci_dma_buf_pin)");
                })
                .unpin(a -> {
                })
                .release(buf -> released(e))
                .phys(a -> phys(e))
                .build();
    }

    /**
     * {@code vfio_pci_dma_buf_attach}: {@code EOPNOTSUPP} for an importer without {@code peer2peer} or one p2pdma
     * finds no path to ({@code pci_p2pdma_distance}); {@code ENODEV} while revoked.
     */
    private void attach(Exported e, Attachment a) {
        Device importer = a.device();
        if (a.importer().map(Importer::physical).orElse(false)) {
            if (e.revoked || e.gone) {
                throw new ErrnoException(Errno.ENODEV, dev.name() + ": dma-buf " + e.dmabuf.ino() + " is revoked");
            }
            return; // iommufd maps the ranges in its own domains; p2pdma judges DMA-API importers, at their map
        }
        if (!a.peer2peer()) {
            throw new ErrnoException(Errno.EOPNOTSUPP, dev.name() + ": dma-buf " + e.dmabuf.ino() + " is MMIO, reached"
                    + " only peer-to-peer, and importer " + importer.name() + " does not allow peer-to-peer");
        }
        P2pPath path = p2p().distance(fn, List.of(importer)).paths().getFirst();
        if (path.mapType() == MapType.NOT_SUPPORTED) {
            throw new ErrnoException(Errno.EOPNOTSUPP, dev.name() + ": no peer-to-peer path to importer "
                    + importer.name() + " (pci_p2pdma_distance: " + path.reason() + ")");
        }
        if (e.revoked || e.gone) {
            throw new ErrnoException(Errno.ENODEV, dev.name() + ": dma-buf " + e.dmabuf.ino() + " is revoked");
        }
    }

    /**
     * {@code vfio_pci_dma_buf_iommufd_map}: the BAR ranges as CPU physical addresses for an importer that maps them
     * into its own IOMMU domains; {@code ENODEV} while revoked. The kernel hands over one range only
     * ({@code EOPNOTSUPP} for more, "will require proper DMABUF support"); here the list is the whole answer.
     */
    private List<PhysVec> phys(Exported e) {
        if (e.revoked || e.gone) {
            throw new ErrnoException(Errno.ENODEV, dev.name() + ": dma-buf " + e.dmabuf.ino() + " is revoked");
        }
        return e.ranges;
    }

    /**
     * {@code vfio_pci_dma_buf_map} with {@code dma_buf_phys_vec_to_sgt}: one segment per range, the bus address for
     * a pair a switch routes ({@code BUS_ADDR}), an IOVA in the importer's domain through the host bridge.
     */
    private MappedSg map(Exported e, Attachment a, DmaDirection dir) {
        if (e.revoked || e.gone) {
            throw new ErrnoException(Errno.ENODEV, dev.name() + ": dma-buf " + e.dmabuf.ino() + " is revoked");
        }
        MapType type = p2p().mapType(fn, a.device());
        if (type == MapType.NOT_SUPPORTED) {
            throw new ErrnoException(Errno.EOPNOTSUPP, dev.name() + ": p2pdma no longer allows " + a.device().name());
        }
        DmaApi dma = a.device().dma();
        List<SgEntry> entries = new ArrayList<>();
        List<DmaSegment> segs = new ArrayList<>();
        try {
            for (PhysVec p : e.ranges) {
                long addr = type == MapType.BUS_ADDR ? dma.mapPeer(p.paddr(), p.length(), dir)
                        : dma.mapResource(p.paddr(), p.length(), dir);
                entries.add(new SgEntry(p.paddr(), p.length()));
                segs.add(new DmaSegment(addr, p.length()));
            }
        } catch (RuntimeException ex) {
            for (DmaSegment s : segs) {
                release(dma, type, s, dir, null);
            }
            throw ex;
        }
        MappedSg sg = new MappedSg(new SgTable(entries), dir, segs);
        e.types.put(sg, type);
        return sg;
    }

    /** Unmaps each segment as {@link #map} made it, or with {@code why} only cuts the device's access to it. */
    private void unmap(Exported e, Attachment a, MappedSg sg, DmaDirection dir, String why) {
        MapType type = why == null ? e.types.remove(sg) : e.types.get(sg);
        if (type == null) {
            throw new ErrnoException(Errno.EINVAL, dev.name() + ": " + a.device().name() + " unmaps a mapping of dma-buf "
                    + e.dmabuf.ino() + " this exporter did not make");
        }
        for (DmaSegment s : sg.segments()) {
            release(a.device().dma(), type, s, dir, why);
        }
    }

    private static void release(DmaApi dma, MapType type, DmaSegment s, DmaDirection dir, String why) {
        if (type == MapType.BUS_ADDR) {
            if (why != null) {
                dma.revokePeer(s.dmaAddress(), s.length(), dir, why);
            } else {
                dma.unmapPeer(s.dmaAddress(), s.length(), dir);
            }
        } else if (why != null) {
            dma.revokeResource(s.dmaAddress(), s.length(), dir, why);
        } else {
            dma.unmapResource(s.dmaAddress(), s.length(), dir);
        }
    }

    /** {@code vfio_pci_dma_buf_release}: the last reference went. */
    private synchronized void released(Exported e) {
        live.remove(e);
    }

    /**
     * {@code vfio_pci_dma_buf_move}: revokes ({@code revoked}) or restores every live buffer whose state differs;
     * importers get {@code move_notify} either way, and on revoke their device access is cut at once (the BAR no
     * longer answers).
     */
    synchronized void move(boolean revoked, String why) {
        for (Exported e : List.copyOf(live)) {
            if (e.gone || e.revoked == revoked || e.dmabuf.isReleased()) {
                continue;
            }
            DmaBuf buf = e.dmabuf;
            buf.resv().lock();
            try {
                e.revoked = revoked;
                long gen = buf.moveNotify();
                if (revoked) {
                    buf.retireMappings(gen, dev.name() + ": " + why);
                }
            } catch (ErrnoException ex) {
                LOG.warn("{}: dma-buf {} released while being {}", dev.name(), buf.ino(), revoked ? "revoked" : "restored", ex);
            } finally {
                buf.resv().unlock();
            }
        }
    }

    /**
     * {@code vfio_pci_dma_buf_cleanup}: every buffer is revoked for good and forgotten; a mapping an importer still
     * holds is reported and torn down, so the device's BARs are reachable by no one.
     *
     * @return the mappings torn down
     */
    synchronized int cleanup(String why) {
        int leaked = 0;
        for (Exported e : List.copyOf(live)) {
            DmaBuf buf = e.dmabuf;
            e.gone = true;
            e.revoked = true;
            buf.resv().lock();
            try {
                if (!buf.isReleased()) {
                    buf.revoke(dev.name() + ": " + why);
                    buf.retireMappings(Long.MAX_VALUE, dev.name() + ": " + why);
                    leaked += buf.reclaimMappings(dev.name() + ": " + why);
                }
            } catch (ErrnoException ex) {
                LOG.warn("{}: dma-buf {} released while being cleaned up", dev.name(), buf.ino(), ex);
            } finally {
                buf.resv().unlock();
            }
        }
        live.clear();
        return leaked;
    }

    /** The buffers exported and not released. */
    synchronized int count() {
        return live.size();
    }

    private P2pDma p2p() {
        return dev.core().p2pDma();
    }
}
