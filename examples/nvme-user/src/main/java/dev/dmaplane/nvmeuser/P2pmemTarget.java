package dev.dmaplane.nvmeuser;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufMapping;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.Importer;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.p2pdma.P2pAllocation;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.p2pdma.P2pMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.vfio.nvme.NvmeCommand;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.Random;

/**
 * An NVMe-oF RDMA target's data path as nvmet-rdma runs it over p2pmem ({@code drivers/nvme/target/core.c}
 * {@code nvmet_setup_p2p_ns_map}, {@code nvmet_req_alloc_sgls}; {@code drivers/nvme/target/rdma.c}
 * {@code nvmet_rdma_rw_ctx_init}). The namespace's controller is bound to {@link NvmePciDriver}, which published its
 * CMB. For the clients [HCA, NVMe] {@code pci_p2pmem_find_many} picks the closest published p2pmem; the data buffer
 * is allocated from it ({@code pci_alloc_p2pmem}), mapped for the HCA and the NVMe ({@code pci_p2pdma_map_sg}, here
 * through {@link P2pmemDmaBuf}); a host's Write command is an RDMA READ by the target of the host's buffer into it
 * and an NVMe Write from it with PRPs at its bus address; a host's Read is an NVMe Read into it and an RDMA WRITE by
 * the target to the host's buffer. Where no p2pmem reaches both clients, or none is left, the buffer is host memory,
 * as {@code nvmet_req_alloc_sgls} falls back to {@code sgl_alloc}: named and counted.
 */
final class P2pmemTarget {
    /** The target's HCA: rxe1 on root port 2. */
    static final String HCA = NvmeCmb.NEAR;
    static final String HCA_BDF = NvmeCmb.NEAR_BDF;
    /** The remote host's HCA. */
    static final String HOST = NvmeCmb.FAR;
    private static final long IOVA = 0x7e00_0000_0000L;
    private static final long CQE = 16;

    /** Where the target's data buffer came from. */
    enum Buffer {
        /** {@code pci_alloc_p2pmem} of the p2pmem {@code pci_p2pmem_find_many} found. */
        P2PMEM,
        /** {@code sgl_alloc}: host pages, when no p2pmem reaches both clients or none was left. */
        HOST_MEMORY
    }

    /**
     * What one run moved, the host's Write command then its Read command.
     *
     * @param buffer     where the data buffer was
     * @param why        which p2pmem, or why host memory
     * @param hcaMapType p2pdma's map type from the buffer to the HCA; empty for host memory (no peer)
     * @param commands   NVMe commands per direction
     * @param rdmaRead   the bus during the target's RDMA READ of the host's buffer into the data buffer
     * @param nvmeWrite  during the NVMe Write from the data buffer
     * @param nvmeRead   during the NVMe Read into the data buffer
     * @param rdmaWrite  during the target's RDMA WRITE from the data buffer to the host's buffer
     */
    record Result(long bytes, Buffer buffer, String why, Optional<MapType> hcaMapType, long commands,
                  DmaTraffic rdmaRead, DmaTraffic nvmeWrite, DmaTraffic nvmeRead, DmaTraffic rdmaWrite) {
        /**
         * Bytes of the data buffer that crossed host RAM: landing from the RDMA READ, leaving for the RDMA WRITE, the
         * NVMe Read's writes beyond its CQEs, and the NVMe Write's reads beyond the Read's (the same SQEs and PRP
         * lists).
         */
        long bufferBytesInRam() {
            return rdmaRead.ramWriteBytes() + rdmaWrite.ramReadBytes() + nvmeRead.ramWriteBytes() - commands * CQE
                    + nvmeWrite.ramReadBytes() - nvmeRead.ramReadBytes();
        }

        String report() {
            return String.format(Locale.ROOT, "NVMe-oF target data path over p2pmem: %d bytes%n"
                            + "data buffer:  %s (%s)%n"
                            + "p2pdma:       %s%n"
                            + "host write:   %s RDMA READ of %s's buffer: %d bytes peer-to-peer, %d written to host RAM;"
                            + " NVMe Write, %d command(s): %d bytes read from host RAM%n"
                            + "host read:    NVMe Read, %d command(s): %d bytes written to host RAM; %s RDMA WRITE to"
                            + " %s's buffer: %d bytes peer-to-peer, %d read from host RAM%n"
                            + "host RAM:     %d bytes of the data buffer%n"
                            + "data check:   %d bytes match both ways%n",
                    bytes, buffer, why, hcaMapType.map(t -> t + " between the buffer and " + HCA + " (" + HCA_BDF + ")")
                            .orElse("none: host memory, mapped through each device's IOMMU"), HCA, HOST, rdmaRead.peerWriteBytes(),
                    rdmaRead.ramWriteBytes(), commands, nvmeWrite.ramReadBytes(), commands, nvmeRead.ramWriteBytes(),
                    HCA, HOST, rdmaWrite.peerReadBytes(), rdmaWrite.ramReadBytes(), bufferBytesInRam(), bytes);
        }
    }

    private P2pmemTarget() {
    }

    /**
     * Binds {@link NvmePciDriver} to the machine's NVMe, runs {@link #run(Machine, RdmaCore, NvmePciDriver.Controller,
     * long)} and unbinds it again.
     */
    static Result run(Machine machine, RdmaCore rdma, long bytes) {
        NvmePciDriver driver = new NvmePciDriver(machine);
        machine.devices().registerDriver(driver);
        try {
            return run(machine, rdma, driver.controller(), bytes);
        } finally {
            machine.devices().unregisterDriver(driver);
        }
    }

    /**
     * One checked Write then Read of {@code bytes} random bytes through the target's data buffer.
     *
     * @throws ErrnoException {@code EINVAL} for a size that is not whole blocks or over the CMB's 16 MiB,
     *                        {@code EIO} when the data differs, the verbs' and the NVMe's errnos; nothing is left
     *                        allocated, mapped or registered then
     */
    static Result run(Machine machine, RdmaCore rdma, NvmePciDriver.Controller nvme, long bytes) {
        if (bytes <= 0 || bytes % nvme.blockSize() != 0 || bytes > NvmeCmb.CMB_BYTES) {
            throw new ErrnoException(Errno.EINVAL, "-o " + bytes + ": whole " + nvme.blockSize() + "-byte blocks up to "
                    + NvmeCmb.CMB_BYTES);
        }
        P2pDma p2p = P2pDma.of(machine);
        DmaBufs bufs = DmaBufs.of(machine);
        PciFunction hca = machine.pci().function(HCA_BDF);
        byte[] written = random(bytes, 1);
        byte[] stored = random(bytes, 2);
        long slba = 0;
        long other = bytes / nvme.blockSize();

        // nvmet_setup_p2p_ns_map: the p2pmem closest to [the port's HCA, the namespace's device]
        Optional<P2pMemory> found = p2p.findMany(List.of(hca, nvme.fn));
        P2pAllocation alloc = null;
        String why;
        if (found.isEmpty()) {
            why = "pci_p2pmem_find_many: no published p2pmem reaches " + HCA_BDF + " and " + nvme.fn.bdf();
        } else {
            try {
                alloc = found.get().alloc(bytes);
                why = "p2pmem of " + found.get().provider().bdf() + String.format(" at bus %#x", alloc.busAddress());
            } catch (ErrnoException e) {
                why = "pci_alloc_p2pmem of " + found.get().provider().bdf() + " failed: " + e.getMessage();
            }
        }
        Buffer kind = alloc == null ? Buffer.HOST_MEMORY : Buffer.P2PMEM;
        Optional<MapType> hcaMap = alloc == null ? Optional.empty() : Optional.of(p2p.mapType(alloc.provider(), hca));
        DmaBuf data = null;
        try {
            data = alloc == null ? new SystemHeap(bufs).allocate(bytes) : P2pmemDmaBuf.export(bufs, p2p, alloc);
            DmaBuf check = new SystemHeap(bufs).allocate(bytes);
            try (RdmaEnd target = new RdmaEnd(machine, rdma, HCA); RdmaEnd host = new RdmaEnd(machine, rdma, HOST);
                 NvmeView dataForNvme = NvmeView.of(data, nvme); NvmeView checkForNvme = NvmeView.of(check, nvme)) {
                RdmaEnd.connect(target, host);
                MemoryRegion mr = target.pd().regDmabufMr(0, bytes, IOVA, data, RdmaEnd.ACCESS);
                long hostBuf = host.buffer(bytes);
                MemoryRegion hostMr = host.pd().regMr(hostBuf, bytes, RdmaEnd.ACCESS);
                host.mm().write(hostBuf, MemorySegment.ofArray(written));

                DmaTraffic t0 = machine.dmaTraffic();
                target.transfer(false, IOVA, mr.lkey(), hostBuf, hostMr.rkey(), bytes);
                DmaTraffic rdmaRead = machine.dmaTraffic().minus(t0);
                t0 = machine.dmaTraffic();
                long commands = transfer(nvme, NvmeCommand.NVM_WRITE, slba, dataForNvme.segments());
                DmaTraffic nvmeWrite = machine.dmaTraffic().minus(t0);
                transfer(nvme, NvmeCommand.NVM_READ, slba, checkForNvme.segments());
                mismatch(written, cpuRead(check, bytes), "the namespace's copy of the host's Write");

                cpuWrite(check, stored);
                transfer(nvme, NvmeCommand.NVM_WRITE, other, checkForNvme.segments());
                t0 = machine.dmaTraffic();
                transfer(nvme, NvmeCommand.NVM_READ, other, dataForNvme.segments());
                DmaTraffic nvmeRead = machine.dmaTraffic().minus(t0);
                t0 = machine.dmaTraffic();
                target.transfer(true, IOVA, mr.lkey(), hostBuf, hostMr.rkey(), bytes);
                DmaTraffic rdmaWrite = machine.dmaTraffic().minus(t0);
                byte[] got = new byte[(int) bytes];
                host.mm().read(hostBuf, MemorySegment.ofArray(got));
                mismatch(stored, got, "what the host's Read brought to its buffer");
                mr.destroy();
                hostMr.destroy();
                return new Result(bytes, kind, why, hcaMap, commands, rdmaRead, nvmeWrite, nvmeRead, rdmaWrite);
            } finally {
                check.put();
            }
        } finally {
            if (data != null) {
                data.put();
            }
            if (alloc != null) {
                found.get().free(alloc);
            }
        }
    }

    /** Moves the blocks from {@code slba} on between the namespace and {@code segments}, each command within one. */
    private static long transfer(NvmePciDriver.Controller nvme, int opcode, long slba, List<DmaSegment> segments) {
        long n = 0;
        long lba = slba;
        for (DmaSegment s : segments) {
            for (long off = 0; off < s.length(); off += nvme.maxTransfer(), n++) {
                long len = Math.min(nvme.maxTransfer(), s.length() - off);
                nvme.io(opcode, lba, s.dmaAddress() + off, len);
                lba += len / nvme.blockSize();
            }
        }
        return n;
    }

    /** The CPU's read of the whole buffer, between {@code dma_buf_begin_cpu_access} and its end, under the lock. */
    private static byte[] cpuRead(DmaBuf buf, long bytes) {
        byte[] b = new byte[(int) bytes];
        buf.beginCpuAccess(DmaDirection.FROM_DEVICE);
        buf.resv().lock();
        try {
            buf.cpuRead(0, MemorySegment.ofArray(b));
        } finally {
            buf.resv().unlock();
            buf.endCpuAccess(DmaDirection.FROM_DEVICE);
        }
        return b;
    }

    private static void cpuWrite(DmaBuf buf, byte[] data) {
        buf.beginCpuAccess(DmaDirection.TO_DEVICE);
        buf.resv().lock();
        try {
            buf.cpuWrite(0, MemorySegment.ofArray(data));
        } finally {
            buf.resv().unlock();
            buf.endCpuAccess(DmaDirection.TO_DEVICE);
        }
    }

    private static void mismatch(byte[] expected, byte[] got, String what) {
        int at = Arrays.mismatch(expected, got);
        if (at >= 0) {
            throw new ErrnoException(Errno.EIO, "nvme cmb --p2pmem: " + what + " differs at byte " + at);
        }
    }

    private static byte[] random(long bytes, long seed) {
        byte[] b = new byte[(int) bytes];
        new Random(bytes * 37 + seed).nextBytes(b);
        return b;
    }

    /**
     * A buffer mapped for the NVMe as the block layer maps a request's pages ({@code blk_rq_dma_map_iter_start}, P2P
     * pages through {@code pci_p2pdma_map_segment}): attached as an importer that takes peer addresses, mapped
     * bidirectionally under the reservation lock; closing unmaps and detaches.
     */
    private record NvmeView(DmaBuf buf, Attachment attachment, DmaBufMapping mapping) implements AutoCloseable {
        static NvmeView of(DmaBuf buf, NvmePciDriver.Controller nvme) {
            Attachment a = buf.attach(nvme.fn, new Importer(true, att -> {
            }));
            DmaBufMapping m = null;
            buf.resv().lock();
            try {
                m = buf.map(a, DmaDirection.BIDIRECTIONAL);
            } finally {
                buf.resv().unlock();
                if (m == null) {
                    buf.detach(a);
                }
            }
            return new NvmeView(buf, a, m);
        }

        List<DmaSegment> segments() {
            return new ArrayList<>(mapping.segments());
        }

        @Override
        public void close() {
            buf.resv().lock();
            try {
                buf.unmap(mapping);
            } finally {
                buf.resv().unlock();
            }
            buf.detach(attachment);
        }
    }
}
