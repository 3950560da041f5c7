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

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * GPUDirect-Storage style reads: NVMe blocks into a GPU buffer given as its dma-buf, as NVIDIA's GDS (and the
 * kernel's P2PDMA NVMe path) decide it: {@code pci_p2pdma_distance} between the GPU (the provider) and the NVMe
 * (the client) first. Where it is {@link MapType#NOT_SUPPORTED}, the data bounces through host memory: the NVMe
 * reads into a pinned bounce buffer, then the CPU writes the dma-buf (bracketed by {@code begin_cpu_access} and
 * {@code end_cpu_access}, under its reservation lock as {@code dma_buf_vmap} wants); each bounced byte is counted. A peer path would need the NVMe's PRPs to hold the
 * dma-buf's DMA addresses for the NVMe, which the container front end cannot give: type 1 pins no
 * {@code VM_PFNMAP} BAR mapping, and the dma-buf mapping of an attachment for the NVMe belongs to the DMA API,
 * which vfio-pci's ownership of the group leaves unused; iommufd's {@code IOMMU_IOAS_MAP_FILE} of a dma-buf is what
 * will map it. So a supported path is refused with {@code EOPNOTSUPP} naming that, not bounced silently.
 */
public final class GpuDirectStorage {
    private GpuDirectStorage() {
    }

    /** How the bytes went: the path's name, the p2pdma verdict, bytes delivered and bytes bounced through host memory. */
    public record Transfer(String path, MapType mapType, long bytes, long bouncedBytes, int bounces, String reason) {
    }

    /**
     * Reads {@code bytes} (whole blocks) from LBA {@code slba} into {@code vram} at {@code offset}, over {@code qp}.
     *
     * @throws ErrnoException {@code EINVAL} for a range outside the dma-buf or not whole blocks; {@code EOPNOTSUPP}
     *                        for a peer path the front end cannot map; {@code EIO} for a failed read
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
        PciFunction nvme = machine.pci().function(ctrl.identity().bdf());
        P2pDistance d = P2pDma.of(machine).distance(gpu, List.of(nvme));
        if (d.mapType() != MapType.NOT_SUPPORTED) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "GDS: " + gpu.bdf() + " -> " + nvme.bdf() + " is "
                    + d.mapType() + ", but the VFIO container cannot map a dma-buf for the device (type 1 pins no"
                    + " VM_PFNMAP); the iommufd front end's IOMMU_IOAS_MAP_FILE will");
        }
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
        return new Transfer("bounce through host memory", d.mapType(), bytes, done, bounces, d.reason());
    }
}
