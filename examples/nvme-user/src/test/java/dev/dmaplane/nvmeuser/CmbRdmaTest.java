package dev.dmaplane.nvmeuser;

import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The NVMe controller memory buffer as the target of an RDMA HCA (NVM Express Base 1.4, 3.1.12 to 3.1.14;
 * {@code nvme_map_cmb} in {@code drivers/nvme/host/pci.c}; {@code drivers/vfio/pci/vfio_pci_dmabuf.c};
 * {@code ibv_reg_dmabuf_mr(3)}; {@code Documentation/driver-api/pci/p2pdma.rst}): the buffer enabled with
 * CMBMSC.CRE then CMSE at its BAR's bus address, a range of it exported as a dma-buf and registered on rxe1, a
 * remote RDMA WRITE landing in it and the NVMe writing it to the namespace with PRPs at the buffer's bus address,
 * and the reverse; no data byte through host RAM, by the bus counters. Without a peer path
 * ({@code pci_p2pdma_distance} NOT_SUPPORTED) vfio-pci's attach refuses the HCA with EOPNOTSUPP and nothing is left
 * attached or registered.
 */
class CmbRdmaTest {
    private static final long SIZE = 256 * 1024;
    private static final long CQE = 16;

    private static Machine boot(boolean peerPath) {
        return Machine.boot(TopologyLoader.load(NvmeCmb.machineText(peerPath), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT);
    }

    @Test
    void anRdmaWriteLandsInTheCmbAndTheNvmeStoresItWithNoHostByte() {
        try (Machine m = boot(true); SoftRoceHost rxe = SoftRoceHost.on(m)) {
            long pinned = m.memory().pinnedFrames();
            NvmeCmb.Result r = NvmeCmb.run(m, rxe.core(), SIZE);
            assertEquals(MapType.THRU_HOST_BRIDGE, r.mapType(), "rxe1 reaches the CMB through the host bridge");
            DmaTraffic w = r.rdmaWrite();
            assertEquals(0, w.ramWriteBytes(), "the RDMA WRITE wrote no host byte: " + w);
            assertEquals(SIZE, w.peerWriteBytes(), "every byte went into the NVMe's BAR2: " + w);
            long n = r.commands();
            assertEquals(SIZE + n * CQE, r.intoHost().ramWriteBytes(), "a read into host RAM: data and CQEs");
            assertTrue(r.intoHost().ramReadBytes() < SIZE / 8, "SQEs and PRP lists: " + r.intoHost());
            DmaTraffic metadata = new DmaTraffic(r.intoHost().ramReadBytes(), n * CQE, 0, 0, 0);
            assertEquals(metadata, r.fromCmb(), "a write from the CMB moves what a host read moves, minus the data");
            assertEquals(metadata, r.intoCmb(), "and so does a read into the CMB");
            DmaTraffic rd = r.rdmaRead();
            assertEquals(0, rd.ramReadBytes(), "the RDMA READ read no host byte: " + rd);
            assertEquals(SIZE, rd.peerReadBytes(), "every byte came from the NVMe's BAR2: " + rd);
            assertEquals(pinned, m.memory().pinnedFrames(), "nothing left pinned");
            assertTrue(DmaBufs.of(m).list().isEmpty(), "no dma-buf left");
            assertEquals(0, rxe.core().device(NvmeCmb.NEAR).orElseThrow().objectCount(), "no verbs object left");
        }
    }

    @Test
    void withoutAPeerPathTheImportIsEopnotsuppAndLeavesNothing() {
        try (Machine m = boot(false); SoftRoceHost rxe = SoftRoceHost.on(m)) {
            long pinned = m.memory().pinnedFrames();
            ErrnoException e = assertThrows(ErrnoException.class, () -> NvmeCmb.run(m, rxe.core(), SIZE));
            assertEquals(Errno.EOPNOTSUPP, e.errno(), e.getMessage());
            assertTrue(e.getMessage().contains("pci_p2pdma_distance"), e.getMessage());
            assertEquals(pinned, m.memory().pinnedFrames(), "nothing left pinned");
            assertTrue(DmaBufs.of(m).list().isEmpty(), "no dma-buf left");
            assertEquals(0, rxe.core().device(NvmeCmb.NEAR).orElseThrow().objectCount(), "no verbs object left");
        }
    }

    @Test
    void theBufferSitsAtItsBarsBusAddressAndExportsOnlyWholePagesInside() {
        try (Machine m = boot(true);
             NvmeController c = NvmeController.attach(m, PerfOptions.DEFAULT_BDF, NvmeController.Options.DEFAULT)) {
            PciFunction fn = m.pci().function(PerfOptions.DEFAULT_BDF);
            ControllerMemoryBuffer cmb = ControllerMemoryBuffer.enable(c);
            assertEquals(new ControllerMemoryBuffer(2, 0, fn.bar(2).orElseThrow().address(), NvmeCmb.CMB_BYTES), cmb);
            assertTrue(cmb.contains(cmb.busAddress() + NvmeCmb.CMB_BYTES - 4096, 4096));
            assertTrue(!cmb.contains(cmb.busAddress() + NvmeCmb.CMB_BYTES - 4096, 4097));
            for (long[] bad : new long[][]{{0, 100}, {-4096, 4096}, {0, NvmeCmb.CMB_BYTES + 4096}, {8, 4096}}) {
                ErrnoException e = assertThrows(ErrnoException.class, () -> cmb.exportDmaBuf(c, bad[0], bad[1]));
                assertEquals(Errno.EINVAL, e.errno(), e.getMessage());
            }
            DmaBuf buf = cmb.exportDmaBuf(c, NvmeCmb.CMB_BYTES - 4096, 4096);
            assertEquals(4096, buf.size());
            buf.put();
        }
    }

    @Test
    void aControllerWithoutACmbIsEopnotsupp() {
        try (Machine m = Machine.bootDefault();
             NvmeController c = NvmeController.attach(m, PerfOptions.DEFAULT_BDF, NvmeController.Options.DEFAULT)) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> ControllerMemoryBuffer.enable(c));
            assertEquals(Errno.EOPNOTSUPP, e.errno(), e.getMessage());
        }
    }

    @Test
    void nvmeCmbOnTheCommandLineChecksTheBytesOrSaysWhyNot() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{"cmb", "--p2p-machine", "-o", "65536"}, print(out), print(err));
        String text = out.toString(StandardCharsets.UTF_8);
        assertEquals(0, status, err.toString(StandardCharsets.UTF_8));
        assertTrue(text.contains("THRU_HOST_BRIDGE") && text.contains("65536 bytes match both ways"), text);
        out.reset();
        assertEquals(1, Main.run(new String[]{"cmb", "-o", "65536"}, print(out), print(err)));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("nvme cmb: ")
                && err.toString(StandardCharsets.UTF_8).contains("pci_p2pdma_distance"), err.toString());
        assertEquals("", out.toString(StandardCharsets.UTF_8), "no report after a failure");
        err.reset();
        assertEquals(1, Main.run(new String[]{"cmb", "--p2p-machine", "-o", "1000"}, print(out), print(err)));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("-o 1000"), err.toString());
    }

    private static PrintStream print(ByteArrayOutputStream b) {
        return new PrintStream(b, true, StandardCharsets.UTF_8);
    }
}
