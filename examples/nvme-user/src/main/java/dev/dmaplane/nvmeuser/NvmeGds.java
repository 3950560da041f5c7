package dev.dmaplane.nvmeuser;

import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.nvme.NvmeCommand;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Locale;
import java.util.Random;

/**
 * {@code nvme gds}: one GPUDirect-Storage read on a machine, checked: random data written to the NVMe through host
 * memory, then read into a buffer of the GPU's VRAM given as its dma-buf ({@link VramExporter} on the GPU's memory
 * BAR), bounced or direct as {@link GpuDirectStorage} decides, and compared byte for byte through the exporter's CPU
 * view. The report names the path, p2pdma's verdict, the bytes bounced and the NVMe's own DMA counters.
 */
final class NvmeGds {
    /** The default machine's GPU and its VRAM BAR. */
    static final String GPU = "0000:03:00.0";
    static final int VRAM_BAR = 2;

    /** What one run did. */
    record Result(GpuDirectStorage.Transfer transfer, DmaTraffic nvmeTraffic, long bytes, String buffer) {
        String report() {
            GpuDirectStorage.Transfer t = transfer;
            return String.format(Locale.ROOT, "GPUDirect Storage: %d bytes from %s into %s%n"
                            + "p2pdma:     %s (%s)%n"
                            + "path:       %s%n"
                            + "bounced:    %d bytes in %d bounce(s); host bytes per delivered byte %.2f%n"
                            + "NVMe DMA:   %d bytes into peer BARs, %d bytes into host RAM%n"
                            + "data check: %d bytes match%n",
                    bytes, PerfOptions.DEFAULT_BDF, buffer, t.mapType(), t.reason(), t.path(), t.bouncedBytes(),
                    t.bounces(), t.hostBytesPerByte(), nvmeTraffic.peerWriteBytes(), nvmeTraffic.ramWriteBytes(), bytes);
        }
    }

    private NvmeGds() {
    }

    /**
     * Runs one read of {@code bytes} on {@code machine}: {@code direct} asks for the direct path only
     * ({@link GpuDirectStorage#readDirect}).
     *
     * @throws ErrnoException {@code EINVAL} for a size that is not whole blocks or over the buffer, {@code EOPNOTSUPP}
     *                        for the direct path without a peer path, {@code EIO} when the data differs
     */
    static Result run(Machine machine, long bytes, boolean direct) {
        PciFunction gpu = machine.pci().function(GPU);
        VramExporter vram = new VramExporter(DmaBufs.of(machine), P2pDma.of(machine), gpu, VRAM_BAR,
                VramExporter.Policy.REFUSE);
        byte[] data = new byte[(int) bytes];
        new Random(bytes).nextBytes(data);
        try (NvmeController c = NvmeController.attach(machine, PerfOptions.DEFAULT_BDF,
                NvmeController.Options.DEFAULT.withIommufd(true))) {
            long chunk = c.identity().maxTransfer();
            int block = c.identity().blockSize();
            if (bytes < block || bytes % block != 0) {
                throw new ErrnoException(Errno.EINVAL, "-o " + bytes + ": whole " + block + "-byte blocks");
            }
            QueuePair qp = c.createIoQueuePair(8, chunk, false);
            try (DmaRegion src = DmaRegion.allocate(c.frontEnd(), bytes)) {
                src.write(0, MemorySegment.ofArray(data));
                for (long off = 0; off < bytes; off += chunk) {
                    c.io(qp, NvmeCommand.NVM_WRITE, off / block, src, off, Math.min(chunk, bytes - off));
                }
            }
            DmaBuf buf = vram.allocate(bytes);
            try {
                PciFunction nvme = machine.pci().function(PerfOptions.DEFAULT_BDF);
                DmaTraffic before = nvme.dma().traffic();
                GpuDirectStorage.Transfer t = direct
                        ? GpuDirectStorage.readDirect(machine, c, qp, gpu, buf, 0, 0, bytes)
                        : GpuDirectStorage.read(machine, c, qp, gpu, buf, 0, 0, bytes);
                DmaTraffic moved = nvme.dma().traffic().minus(before);
                byte[] back = new byte[(int) bytes];
                buf.resv().lock();
                try {
                    buf.cpuRead(0, MemorySegment.ofArray(back));
                } finally {
                    buf.resv().unlock();
                }
                int at = Arrays.mismatch(data, back);
                if (at >= 0) {
                    throw new ErrnoException(Errno.EIO, "nvme gds: VRAM differs from the NVMe's data at byte " + at);
                }
                return new Result(t, moved, bytes, "dma-buf " + buf.ino() + " (" + buf.exporterName() + ")");
            } finally {
                buf.put();
            }
        } finally {
            vram.stop("nvme gds done");
        }
    }
}
