package dev.dmaplane.nvmeuser;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.p2pdma.P2pDistance;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.nvme.NvmeCommand;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * GPUDirect-Storage style reads: NVMe blocks into a GPU buffer given as its dma-buf, as NVIDIA's GDS (and the
 * kernel's P2PDMA NVMe path) decide it: {@code pci_p2pdma_distance} between the GPU (the provider) and the NVMe
 * (the client) first. Where it is {@link MapType#NOT_SUPPORTED}, the data bounces through host memory: the NVMe
 * reads into a pinned bounce buffer, then the CPU writes the dma-buf (bracketed by {@code begin_cpu_access} and
 * {@code end_cpu_access}, under its reservation lock as {@code dma_buf_vmap} wants); each bounced byte is counted.
 * Where there is a peer path, the read goes direct: the dma-buf is mapped for the NVMe with iommufd's
 * {@code IOMMU_IOAS_MAP_FILE} (its physical VRAM range, which today's kernel takes from vfio-pci's dma-bufs only;
 * the GPU's export gives it here, going beyond), the NVMe's PRPs point at that IOVA and the data lands in VRAM with
 * no host memory in between: 0 bytes bounced. A front end that cannot map a dma-buf (the container's type 1) answers
 * {@code EOPNOTSUPP} for a peer path, naming why, rather than bouncing silently.
 */
public final class GpuDirectStorage {
    /** The path's name when the data goes straight into the dma-buf. */
    public static final String DIRECT = "direct into the dma-buf (IOMMU_IOAS_MAP_FILE)";
    /** The path's name when it bounces through host memory. */
    public static final String BOUNCE = "bounce through host memory";
    /** The machine file of {@link #peerMachineText}, a resource beside this class. */
    public static final String PEER_MACHINE = "gds-p2p-machine.yaml";

    private GpuDirectStorage() {
    }

    /**
     * How the bytes went: the path's name, the p2pdma verdict, bytes delivered and bytes bounced through host memory
     * (with the number of bounces), p2pdma's reason.
     */
    public record Transfer(String path, MapType mapType, long bytes, long bouncedBytes, int bounces, String reason) {
        /** Host memory bytes per delivered byte: 1 for the bounce, 0 direct. */
        public double hostBytesPerByte() {
            return bytes == 0 ? 0 : (double) bouncedBytes / bytes;
        }
    }

    /**
     * Reads {@code bytes} (whole blocks) from LBA {@code slba} into {@code vram} at {@code offset}, over {@code qp}:
     * bounced where p2pdma finds no path, direct where it finds one.
     *
     * @throws ErrnoException {@code EINVAL} for a range outside the dma-buf or not whole blocks; {@code EOPNOTSUPP}
     *                        for a peer path the front end cannot map; {@code ENODEV} for a revoked dma-buf;
     *                        {@code EIO} for a failed read
     */
    public static Transfer read(Machine machine, NvmeController ctrl, QueuePair qp, PciFunction gpu, DmaBuf vram,
                                long offset, long slba, long bytes) {
        ErrnoException.requireNonNull(machine, "GpuDirectStorage.read: machine");
        ErrnoException.requireNonNull(ctrl, "GpuDirectStorage.read: controller");
        ErrnoException.requireNonNull(qp, "GpuDirectStorage.read: queue pair");
        ErrnoException.requireNonNull(gpu, "GpuDirectStorage.read: GPU");
        ErrnoException.requireNonNull(vram, "GpuDirectStorage.read: dma-buf");
        int block = ctrl.identity().blockSize();
        if (bytes < 1 || bytes % block != 0 || offset < 0 || offset > vram.size() - bytes) {
            throw new ErrnoException(Errno.EINVAL, "GDS read of " + bytes + " bytes at offset " + offset + " of a "
                    + vram.size() + "-byte dma-buf: whole " + block + "-byte blocks inside it");
        }
        P2pDistance d = distance(machine, ctrl, gpu);
        if (d.mapType() == MapType.NOT_SUPPORTED) {
            return bounce(ctrl, qp, vram, offset, slba, bytes, d);
        }
        return direct(ctrl, qp, vram, offset, slba, bytes, d);
    }

    /**
     * As {@link #read}, the direct path only: where p2pdma finds no path between the GPU and the NVMe the answer is
     * {@code EOPNOTSUPP} with p2pdma's reason, and nothing is read.
     */
    public static Transfer readDirect(Machine machine, NvmeController ctrl, QueuePair qp, PciFunction gpu, DmaBuf vram,
                                      long offset, long slba, long bytes) {
        ErrnoException.requireNonNull(machine, "GpuDirectStorage.readDirect: machine");
        ErrnoException.requireNonNull(ctrl, "GpuDirectStorage.readDirect: controller");
        ErrnoException.requireNonNull(qp, "GpuDirectStorage.readDirect: queue pair");
        ErrnoException.requireNonNull(gpu, "GpuDirectStorage.readDirect: GPU");
        ErrnoException.requireNonNull(vram, "GpuDirectStorage.readDirect: dma-buf");
        P2pDistance d = distance(machine, ctrl, gpu);
        if (d.mapType() == MapType.NOT_SUPPORTED) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "GDS direct: no peer path from " + gpu.bdf() + " to "
                    + ctrl.identity().bdf() + " (pci_p2pdma_distance: " + d.reason() + ")");
        }
        return read(machine, ctrl, qp, gpu, vram, offset, slba, bytes);
    }

    /** {@code pci_p2pdma_distance}: the GPU the provider, the NVMe the client. */
    private static P2pDistance distance(Machine machine, NvmeController ctrl, PciFunction gpu) {
        PciFunction nvme = machine.pci().function(ctrl.identity().bdf());
        return P2pDma.of(machine).distance(gpu, List.of(nvme));
    }

    /**
     * The text of {@code gds-p2p-machine.yaml}, the machine file nvme-user ships: the default machine with the host
     * bridge on p2pdma's whitelist, where the GPU and the NVMe have a peer path.
     */
    public static String peerMachineText() {
        try (InputStream in = GpuDirectStorage.class.getResourceAsStream(PEER_MACHINE)) {
            if (in == null) {
                throw new ErrnoException(Errno.ENOENT, "nvme-user ships no " + PEER_MACHINE);
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "reading " + PEER_MACHINE + ": " + e.getMessage(), e);
        }
    }

    /** The peer path: the dma-buf mapped into the NVMe's IOAS, each chunk read straight to its IOVA. */
    private static Transfer direct(NvmeController ctrl, QueuePair qp, DmaBuf vram, long offset, long slba, long bytes,
                                   P2pDistance d) {
        DmaFrontEnd fe = ctrl.frontEnd();
        int fd = fe.user().installDmaBuf(vram);
        long iova;
        try {
            iova = fe.mapDmaBuf(fd, vram.size());
        } catch (ErrnoException e) {
            throw new ErrnoException(e.errno(), "GDS: " + d.provider().bdf() + " -> "
                    + fe.bdf() + " is " + d.mapType() + ", but the dma-buf cannot be mapped for the NVMe: "
                    + e.getMessage(), e);
        } finally {
            fe.user().close(fd); // the IOAS keeps its own reference
        }
        try {
            long chunk = Math.min(ctrl.identity().maxTransfer(), bytes);
            for (long done = 0; done < bytes; done += chunk) {
                long n = Math.min(chunk, bytes - done);
                ctrl.io(qp, NvmeCommand.NVM_READ, slba + done / ctrl.identity().blockSize(), iova + offset + done, n);
            }
        } finally {
            fe.unmapDmaBuf(iova, vram.size());
        }
        return new Transfer(DIRECT, d.mapType(), bytes, 0, 0, d.reason());
    }

    private static Transfer bounce(NvmeController ctrl, QueuePair qp, DmaBuf vram, long offset, long slba, long bytes,
                                   P2pDistance d) {
        int block = ctrl.identity().blockSize();
        long chunk = Math.min(ctrl.identity().maxTransfer(), bytes);
        long done = 0;
        int bounces = 0;
        try (DmaRegion bounce = DmaRegion.allocate(ctrl.frontEnd(), chunk)) {
            MemorySegment staging = MemorySegment.ofArray(new byte[(int) chunk]);
            while (done < bytes) {
                long n = Math.min(chunk, bytes - done);
                ctrl.io(qp, NvmeCommand.NVM_READ, slba + done / block, bounce, 0, n);
                MemorySegment part = staging.asSlice(0, n);
                bounce.read(0, part);
                vram.beginCpuAccess(DmaDirection.TO_DEVICE);
                vram.resv().lock();
                try {
                    vram.cpuWrite(offset + done, part); // dma_buf_vmap's copy, under the reservation lock
                } finally {
                    vram.resv().unlock();
                    vram.endCpuAccess(DmaDirection.TO_DEVICE);
                }
                done += n;
                bounces++;
            }
        }
        return new Transfer(BOUNCE, d.mapType(), bytes, done, bounces, d.reason());
    }
}
