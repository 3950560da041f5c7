package dev.dmaplane.nvmeuser;

import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.vfio.nvme.NvmeCommand;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Locale;
import java.util.Random;

/**
 * {@code nvme cmb}: the NVMe controller memory buffer as an RDMA target, checked byte for byte. The buffer is
 * enabled ({@link ControllerMemoryBuffer#enable}), a range of it exported as a dma-buf through vfio-pci and registered
 * on rxe1 with {@code ibv_reg_dmabuf_mr}; rxe0 RDMA-WRITEs random bytes into it, the NVMe writes them to the
 * namespace with PRPs at the buffer's bus address, and a read into host memory must give them back; then the NVMe
 * reads other bytes into the buffer and rxe0 RDMA-READs them. The machine's bus counters are read around each step.
 * Where p2pdma finds no path between rxe1 and the NVMe the registration is {@code EOPNOTSUPP}.
 */
final class NvmeCmb {
    /** The HCA the buffer is registered on: root port 2, through the host bridge to the NVMe on root port 3. */
    static final String NEAR = "rxe1";
    static final String NEAR_BDF = "0000:05:00.0";
    /** The remote end: the other HCA. */
    static final String FAR = "rxe0";
    /** The size of the buffer the machine gives the NVMe (its BAR2). */
    static final long CMB_BYTES = 16L << 20;
    private static final long IOVA = 0x7f00_0000_0000L;
    private static final long PAGE = 4096;
    private static final String NVME_BAR0 = "                - { index: 0, size: 16KiB, kind: mmio }\n";
    private static final String NVME_PROPERTIES = "                namespaces: 1\n                namespaceSize: 1GiB\n";

    /**
     * What one run moved.
     *
     * @param mapType    p2pdma's map type between the NVMe and rxe1
     * @param commands   NVMe commands per direction
     * @param rdmaWrite  the bus during rxe0's RDMA WRITE into the buffer
     * @param fromCmb    during the NVMe's writes from the buffer to the namespace
     * @param intoHost   during the NVMe's reads of the same blocks into host memory (for comparison)
     * @param intoCmb    during the NVMe's reads into the buffer
     * @param rdmaRead   during rxe0's RDMA READ from the buffer
     */
    record Result(long bytes, MapType mapType, long commands, DmaTraffic rdmaWrite, DmaTraffic fromCmb,
                  DmaTraffic intoHost, DmaTraffic intoCmb, DmaTraffic rdmaRead) {
        String report() {
            return String.format(Locale.ROOT, "NVMe controller memory buffer as an RDMA target: %d bytes%n"
                            + "p2pdma:       %s (%s and %s)%n"
                            + "RDMA WRITE:   %s into the buffer: %d bytes peer-to-peer, %d bytes written to host RAM%n"
                            + "NVMe write:   from the buffer, %d command(s): %d bytes read from host RAM (SQEs, PRP "
                            + "lists), %d written (CQEs)%n"
                            + "NVMe read:    into host memory for the check: %d bytes written to host RAM%n"
                            + "NVMe read:    into the buffer: %d bytes read from host RAM, %d written%n"
                            + "RDMA READ:    %s from the buffer: %d bytes peer-to-peer, %d bytes read from host RAM%n"
                            + "data check:   %d bytes match both ways%n",
                    bytes, mapType, PerfOptions.DEFAULT_BDF, NEAR_BDF, FAR, rdmaWrite.peerWriteBytes(),
                    rdmaWrite.ramWriteBytes(), commands, fromCmb.ramReadBytes(), fromCmb.ramWriteBytes(),
                    intoHost.ramWriteBytes(), intoCmb.ramReadBytes(), intoCmb.ramWriteBytes(), FAR,
                    rdmaRead.peerReadBytes(), rdmaRead.ramReadBytes(), bytes);
        }
    }

    private NvmeCmb() {
    }

    /**
     * The default machine, or with {@code peerPath} the GPUDirect Storage peer machine (host bridge on p2pdma's
     * whitelist), with a 16 MiB controller memory buffer in the NVMe's BAR2 ({@code cmbBar: 2}).
     */
    static String machineText(boolean peerPath) {
        String text = peerPath ? GpuDirectStorage.peerMachineText() : TopologyLoader.defaultMachineText();
        if (!text.contains(NVME_BAR0) || !text.contains(NVME_PROPERTIES)) {
            throw new ErrnoException(Errno.ENODEV, "nvme cmb: the machine file's NVMe BAR0 or properties changed");
        }
        return text.replace(NVME_BAR0, NVME_BAR0 + "                - { index: 2, size: 16MiB, kind: memory }\n")
                .replace(NVME_PROPERTIES, NVME_PROPERTIES + "                cmbBar: 2\n");
    }

    /**
     * One checked run of {@code bytes} on {@code machine} with the HCAs of {@code rdma}.
     *
     * @throws ErrnoException {@code EINVAL} for a size that is not whole pages within the buffer, {@code EOPNOTSUPP}
     *                        from the registration without a peer path or for a controller without a buffer,
     *                        {@code EIO} when the data differs
     */
    static Result run(Machine machine, RdmaCore rdma, long bytes) {
        if (bytes < PAGE || bytes > CMB_BYTES || bytes % PAGE != 0) {
            throw new ErrnoException(Errno.EINVAL, "-o " + bytes + ": whole 4096-byte pages up to " + CMB_BYTES);
        }
        byte[] written = random(bytes, 1);
        byte[] stored = random(bytes, 2);
        try (NvmeController c = NvmeController.attach(machine, PerfOptions.DEFAULT_BDF, NvmeController.Options.DEFAULT)) {
            PciFunction nvme = machine.pci().function(PerfOptions.DEFAULT_BDF);
            MapType mapType = P2pDma.of(machine).mapType(nvme, machine.pci().function(NEAR_BDF));
            ControllerMemoryBuffer cmb = ControllerMemoryBuffer.enable(c);
            QueuePair qp = c.createIoQueuePair(8, c.identity().maxTransfer(), false);
            DmaBuf buf = cmb.exportDmaBuf(c, 0, bytes);
            try (RdmaEnd near = new RdmaEnd(machine, rdma, NEAR); RdmaEnd far = new RdmaEnd(machine, rdma, FAR);
                 DmaRegion host = DmaRegion.allocate(c.frontEnd(), bytes)) {
                RdmaEnd.connect(near, far);
                MemoryRegion mr = near.pd().regDmabufMr(0, bytes, IOVA, buf, RdmaEnd.ACCESS);
                try {
                    long src = far.buffer(bytes);
                    MemoryRegion farMr = far.pd().regMr(src, bytes, RdmaEnd.ACCESS);
                    far.mm().write(src, MemorySegment.ofArray(written));

                    DmaTraffic t0 = machine.dmaTraffic();
                    far.transfer(true, src, farMr.lkey(), IOVA, mr.rkey(), bytes);
                    DmaTraffic rdmaWrite = machine.dmaTraffic().minus(t0);
                    t0 = machine.dmaTraffic();
                    long commands = transfer(c, qp, NvmeCommand.NVM_WRITE, 0, cmb.busAddress(), bytes);
                    DmaTraffic fromCmb = machine.dmaTraffic().minus(t0);
                    t0 = machine.dmaTraffic();
                    transfer(c, qp, NvmeCommand.NVM_READ, 0, host.iova(0), bytes);
                    DmaTraffic intoHost = machine.dmaTraffic().minus(t0);
                    check(written, host, bytes, "the namespace's copy of what rxe0 wrote into the buffer");

                    long slba = bytes / c.identity().blockSize();
                    host.write(0, MemorySegment.ofArray(stored));
                    transfer(c, qp, NvmeCommand.NVM_WRITE, slba, host.iova(0), bytes);
                    t0 = machine.dmaTraffic();
                    transfer(c, qp, NvmeCommand.NVM_READ, slba, cmb.busAddress(), bytes);
                    DmaTraffic intoCmb = machine.dmaTraffic().minus(t0);
                    // rxe0 reads the buffer back into its own memory, over the bytes it wrote from
                    t0 = machine.dmaTraffic();
                    far.transfer(false, src, farMr.lkey(), IOVA, mr.rkey(), bytes);
                    DmaTraffic rdmaRead = machine.dmaTraffic().minus(t0);
                    byte[] got = new byte[(int) bytes];
                    far.mm().read(src, MemorySegment.ofArray(got));
                    mismatch(stored, got, "what rxe0 RDMA-READ from the buffer the NVMe read into");
                    return new Result(bytes, mapType, commands, rdmaWrite, fromCmb, intoHost, intoCmb, rdmaRead);
                } finally {
                    mr.destroy();
                }
            } finally {
                buf.put();
                qp.close();
            }
        }
    }

    /** Moves {@code bytes} between LBA {@code slba} and {@code addr} in MDTS-sized commands; returns how many. */
    private static long transfer(NvmeController c, QueuePair qp, int opcode, long slba, long addr, long bytes) {
        long chunk = c.identity().maxTransfer();
        long n = 0;
        for (long off = 0; off < bytes; off += chunk, n++) {
            c.io(qp, opcode, slba + off / c.identity().blockSize(), addr + off, Math.min(chunk, bytes - off));
        }
        return n;
    }

    private static void check(byte[] expected, DmaRegion host, long bytes, String what) {
        byte[] got = new byte[(int) bytes];
        host.read(0, MemorySegment.ofArray(got));
        mismatch(expected, got, what);
    }

    private static void mismatch(byte[] expected, byte[] got, String what) {
        int at = Arrays.mismatch(expected, got);
        if (at >= 0) {
            throw new ErrnoException(Errno.EIO, "nvme cmb: " + what + " differs at byte " + at);
        }
    }

    private static byte[] random(long bytes, long seed) {
        byte[] b = new byte[(int) bytes];
        new Random(bytes * 31 + seed).nextBytes(b);
        return b;
    }
}
