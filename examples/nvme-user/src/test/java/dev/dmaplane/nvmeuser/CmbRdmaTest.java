package dev.dmaplane.nvmeuser;

import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.nvmeuser.rdma.RcEnd;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The NVMe controller memory buffer as the target of an RDMA HCA (NVM Express Base 1.4, 3.1.12 to 3.1.14;
 * {@code nvme_map_cmb} in {@code drivers/nvme/host/pci.c}; {@code drivers/vfio/pci/vfio_pci_dmabuf.c};
 * {@code ibv_reg_dmabuf_mr(3)}; {@code Documentation/driver-api/pci/p2pdma.rst}): the buffer enabled with
 * CMBMSC.CRE then CMSE at its BAR's bus address, a range of it exported as a dma-buf and registered on rxe1, a
 * remote RDMA WRITE landing in it and the NVMe writing it to the namespace with PRPs at the buffer's bus address,
 * and the reverse; no data byte through host RAM. Without a peer path ({@code pci_p2pdma_distance} NOT_SUPPORTED)
 * the exporter's attach refuses the HCA with EOPNOTSUPP and nothing is left attached.
 */
class CmbRdmaTest {
    private static final String NVME = "0000:06:00.0";
    /** rxe1, on root port 2: through the host bridge to the NVMe on root port 3. */
    private static final String NEAR = "rxe1";
    private static final String NEAR_BDF = "0000:05:00.0";
    private static final String FAR = "rxe0";
    private static final String NVME_BAR0 = "                - { index: 0, size: 16KiB, kind: mmio }\n";
    private static final String NVME_PROPERTIES = "                namespaces: 1\n                namespaceSize: 1GiB\n";
    private static final long CMB_BYTES = 16L << 20;
    private static final int SIZE = 256 * 1024;
    private static final long IOVA = 0x7f00_0000_0000L;
    private static final long CQE = 16;

    /** The default machine (or the peer machine of GPUDirect Storage) with a 16 MiB CMB in the NVMe's BAR2. */
    static String machineText(boolean peerPath) {
        String text = peerPath ? GpuDirectStorage.peerMachineText() : TopologyLoader.defaultMachineText();
        assertTrue(text.contains(NVME_BAR0) && text.contains(NVME_PROPERTIES), "the NVMe's BARs or properties moved");
        return text.replace(NVME_BAR0, NVME_BAR0 + "                - { index: 2, size: 16MiB, kind: memory }\n")
                .replace(NVME_PROPERTIES, NVME_PROPERTIES + "                cmbBar: 2\n");
    }

    @Test
    void anRdmaWriteLandsInTheCmbAndTheNvmeStoresItWithNoHostByte() {
        byte[] data = random(91);
        byte[] stored = random(92);
        try (Machine m = Machine.boot(TopologyLoader.load(machineText(true), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT);
             SoftRoceHost rxe = SoftRoceHost.on(m);
             NvmeController c = NvmeController.attach(m, NVME, NvmeController.Options.DEFAULT)) {
            PciFunction fn = m.pci().function(NVME);
            long pinned = m.memory().pinnedFrames();
            ControllerMemoryBuffer cmb = ControllerMemoryBuffer.enable(c);
            assertEquals(new ControllerMemoryBuffer(2, 0, fn.bar(2).orElseThrow().address(), CMB_BYTES), cmb);
            assertEquals(MapType.THRU_HOST_BRIDGE, P2pDma.of(m).mapType(fn, m.pci().function(NEAR_BDF)),
                    "rxe1 reaches the CMB through the whitelisted host bridge and its IOMMU");
            QueuePair qp = c.createIoQueuePair(8, c.identity().maxTransfer(), false);
            DmaBuf buf = cmb.exportDmaBuf(c, 0, SIZE);
            try (RcEnd near = new RcEnd(m, rxe.core(), NEAR); RcEnd far = new RcEnd(m, rxe.core(), FAR);
                 DmaRegion host = DmaRegion.allocate(c.frontEnd(), SIZE)) {
                RcEnd.connect(near, far);
                MemoryRegion mr = near.pd().regDmabufMr(0, SIZE, IOVA, buf, RcEnd.ACCESS);
                long src = far.buffer(SIZE);
                MemoryRegion srcMr = far.pd().regMr(src, SIZE, RcEnd.ACCESS);
                far.mm().write(src, MemorySegment.ofArray(data));

                DmaTraffic t0 = m.dmaTraffic();
                far.transfer(true, src, srcMr.lkey(), IOVA, mr.rkey(), SIZE);
                DmaTraffic rdma = m.dmaTraffic().minus(t0);
                assertEquals(0, rdma.ramWriteBytes(), "the RDMA WRITE wrote no host byte: " + rdma);
                assertEquals(SIZE, rdma.peerWriteBytes(), "every byte went into the NVMe's BAR2: " + rdma);

                t0 = m.dmaTraffic();
                long commands = transfer(c, qp, NvmeCommand.NVM_WRITE, 2048, cmb.busAddress());
                DmaTraffic fromCmb = m.dmaTraffic().minus(t0);
                host.write(0, MemorySegment.ofArray(new byte[SIZE]));
                t0 = m.dmaTraffic();
                transfer(c, qp, NvmeCommand.NVM_READ, 2048, host.iova(0));
                DmaTraffic hostRead = m.dmaTraffic().minus(t0);
                assertEquals(SIZE + commands * CQE, hostRead.ramWriteBytes(), "a read into host RAM: data and CQEs");
                assertEquals(new DmaTraffic(hostRead.ramReadBytes(), commands * CQE, 0, 0, 0), fromCmb,
                        "a write from the CMB reads only what a read into host RAM reads (SQEs, PRP lists), no data");
                assertTrue(hostRead.ramReadBytes() < SIZE / 8, "SQEs and PRP lists: " + hostRead);
                byte[] back = new byte[SIZE];
                host.read(0, MemorySegment.ofArray(back));
                assertArrayEquals(data, back, "the namespace holds what the remote RDMA WRITE put in the CMB");

                host.write(0, MemorySegment.ofArray(stored));
                transfer(c, qp, NvmeCommand.NVM_WRITE, 8192, host.iova(0));
                t0 = m.dmaTraffic();
                transfer(c, qp, NvmeCommand.NVM_READ, 8192, cmb.busAddress());
                DmaTraffic intoCmb = m.dmaTraffic().minus(t0);
                assertEquals(fromCmb, intoCmb, "a read into the CMB moves no data byte over the bus either: only "
                        + "SQEs and PRP lists read, CQEs written");

                long dst = far.buffer(SIZE);
                MemoryRegion dstMr = far.pd().regMr(dst, SIZE, RcEnd.ACCESS);
                t0 = m.dmaTraffic();
                far.transfer(false, dst, dstMr.lkey(), IOVA, mr.rkey(), SIZE);
                DmaTraffic rdmaRead = m.dmaTraffic().minus(t0);
                assertEquals(0, rdmaRead.ramReadBytes(), "the RDMA READ read no host byte: " + rdmaRead);
                assertEquals(SIZE, rdmaRead.peerReadBytes(), "every byte came from the NVMe's BAR2: " + rdmaRead);
                byte[] got = new byte[SIZE];
                far.mm().read(dst, MemorySegment.ofArray(got));
                assertArrayEquals(stored, got, "the remote RDMA READ got what the NVMe read into the CMB");
                mr.destroy();
                assertTrue(buf.attachments().isEmpty(), "deregistering detached rxe1");
            } finally {
                buf.put();
                qp.close();
            }
            assertEquals(pinned, m.memory().pinnedFrames(), "nothing left pinned");
        }
    }

    @Test
    void withoutAPeerPathTheImportIsEopnotsuppAndLeavesNothing() {
        try (Machine m = Machine.boot(TopologyLoader.load(machineText(false), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT);
             SoftRoceHost rxe = SoftRoceHost.on(m);
             NvmeController c = NvmeController.attach(m, NVME, NvmeController.Options.DEFAULT)) {
            ControllerMemoryBuffer cmb = ControllerMemoryBuffer.enable(c);
            DmaBuf buf = cmb.exportDmaBuf(c, 0, SIZE);
            try (RcEnd near = new RcEnd(m, rxe.core(), NEAR)) {
                int objects = near.device().objectCount();
                ErrnoException e = assertThrows(ErrnoException.class,
                        () -> near.pd().regDmabufMr(0, SIZE, IOVA, buf, RcEnd.ACCESS));
                assertEquals(Errno.EOPNOTSUPP, e.errno(), e.getMessage());
                assertTrue(e.getMessage().contains("pci_p2pdma_distance"), e.getMessage());
                assertTrue(buf.attachments().isEmpty(), "no attachment left");
                assertEquals(objects, near.device().objectCount(), "no MR left");
            } finally {
                buf.put();
            }
        }
    }

    @Test
    void aControllerWithoutACmbIsEopnotsupp() {
        try (Machine m = Machine.bootDefault();
             NvmeController c = NvmeController.attach(m, NVME, NvmeController.Options.DEFAULT)) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> ControllerMemoryBuffer.enable(c));
            assertEquals(Errno.EOPNOTSUPP, e.errno(), e.getMessage());
        }
    }

    /** Moves {@link #SIZE} bytes between LBA {@code slba} and {@code addr} in MDTS-sized commands; returns how many. */
    private static long transfer(NvmeController c, QueuePair qp, int opcode, long slba,
                                 long addr) {
        long chunk = c.identity().maxTransfer();
        long n = 0;
        for (long off = 0; off < SIZE; off += chunk, n++) {
            c.io(qp, opcode, slba + off / c.identity().blockSize(), addr + off, Math.min(chunk, SIZE - off));
        }
        return n;
    }

    private static byte[] random(long seed) {
        byte[] b = new byte[SIZE];
        new Random(seed).nextBytes(b);
        return b;
    }
}
