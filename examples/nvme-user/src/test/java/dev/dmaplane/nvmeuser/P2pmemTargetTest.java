package dev.dmaplane.nvmeuser;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.p2pdma.P2pAllocation;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.p2pdma.P2pMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.vfio.nvme.NvmeRegs;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The NVMe controller memory buffer published as p2pmem by the kernel-style nvme driver ({@code nvme_map_cmb} in
 * {@code drivers/nvme/host/pci.c}: CMBMSC.CRE, CMBSZ and CMBLOC read, CMBMSC.CRE|CMSE with the bus address,
 * {@code pci_p2pdma_add_resource}, {@code pci_p2pmem_publish} when CMBSZ has WDS and RDS; NVM Express Base 2.0,
 * 3.1.4.12 to 3.1.4.14), taken back when the driver unbinds ({@code pci_p2pdma_release}), and an NVMe-oF RDMA
 * target's data path over it as nvmet-rdma runs one ({@code nvmet_setup_p2p_ns_map} with
 * {@code pci_p2pmem_find_many} for [HCA, NVMe], {@code nvmet_req_alloc_p2pmem_sgls}, {@code rdma_rw_ctx_init}
 * mapping through {@code pci_p2pdma_map_sg}): the host's bytes pulled into the CMB by RDMA READ and written to the
 * namespace from there, other blocks read into it and pushed by RDMA WRITE, no data byte in host RAM by the bus
 * counters. Where no p2pmem reaches both, the buffer is host memory, as {@code nvmet_req_alloc_sgls} falls back to
 * {@code sgl_alloc}.
 */
class P2pmemTargetTest {
    private static final long SIZE = 256 * 1024;
    private static final long CQE = 16;

    private static Machine boot(boolean peerPath) {
        return Machine.boot(TopologyLoader.load(NvmeCmb.machineText(peerPath), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT);
    }

    @Test
    void theDriverPublishesTheCmbAndTakesItBackAtUnbind() {
        try (Machine m = boot(true)) {
            PciFunction fn = m.pci().function(PerfOptions.DEFAULT_BDF);
            P2pDma p2p = P2pDma.of(m);
            NvmePciDriver driver = new NvmePciDriver(m);
            m.devices().registerDriver(driver);
            NvmePciDriver.Controller c = driver.controller();
            assertSame(fn, c.fn);
            int cmbsz = c.cmbsz();
            assertEquals(NvmeRegs.CMBSZ_WDS | NvmeRegs.CMBSZ_RDS, cmbsz & (NvmeRegs.CMBSZ_WDS | NvmeRegs.CMBSZ_RDS));
            P2pMemory cmb = c.cmb().orElseThrow();
            assertSame(cmb, p2p.memory(fn).orElseThrow());
            assertEquals(List.of(new P2pMemory.Resource(2, 0, NvmeCmb.CMB_BYTES, fn.bar(2).orElseThrow().address())),
                    cmb.resources());
            assertTrue(cmb.published(), "WDS and RDS: published");
            assertSame(cmb, p2p.findMany(List.of(m.pci().function(P2pmemTarget.HCA_BDF), fn)).orElseThrow());

            P2pAllocation out = cmb.alloc(4096);
            m.devices().unregisterDriver(driver);
            assertFalse(cmb.published(), "unpublished at unbind");
            assertEquals(Optional.empty(), p2p.findMany(List.of(fn)));
            assertEquals(Errno.ENOMEM, assertThrows(ErrnoException.class, () -> cmb.alloc(4096)).errno());
            assertSame(cmb, p2p.memory(fn).orElseThrow(), "kept while an allocation is out");
            cmb.free(out);
            assertEquals(Optional.empty(), p2p.memory(fn), "gone with the last free");
            assertThrows(ErrnoException.class, driver::controller);
        }
    }

    /** {@code nvme_map_cmb} adds the buffer in any case but publishes it only when CMBSZ has both WDS and RDS. */
    @Test
    void aCmbWithoutReadAndWriteDataIsAddedButNotPublished() {
        String text = NvmeCmb.machineText(true).replace("cmbBar: 2\n", "cmbBar: 2\n                cmbSupport: 13\n");
        try (Machine m = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), Machine.Options.DEFAULT)) {
            NvmePciDriver driver = new NvmePciDriver(m);
            m.devices().registerDriver(driver);
            NvmePciDriver.Controller c = driver.controller();
            assertEquals(NvmeRegs.CMBSZ_SQS | NvmeRegs.CMBSZ_LISTS | NvmeRegs.CMBSZ_RDS, c.cmbsz() & 0x1f, "no WDS");
            P2pMemory cmb = c.cmb().orElseThrow();
            assertEquals(NvmeCmb.CMB_BYTES, cmb.size(), "added");
            assertFalse(cmb.published(), "not published without WDS");
            assertEquals(Optional.empty(), P2pDma.of(m).findMany(List.of(m.pci().function(P2pmemTarget.HCA_BDF), c.fn)));
            m.devices().unregisterDriver(driver);
            assertEquals(Optional.empty(), P2pDma.of(m).memory(c.fn), "taken back at unbind");
        }
    }

    @Test
    void aControllerWithoutACmbPublishesNothing() {
        try (Machine m = Machine.bootDefault()) {
            NvmePciDriver driver = new NvmePciDriver(m);
            m.devices().registerDriver(driver);
            NvmePciDriver.Controller c = driver.controller();
            assertEquals(Optional.empty(), c.cmb());
            assertEquals(Optional.empty(), P2pDma.of(m).memory(c.fn));
            m.devices().unregisterDriver(driver);
        }
    }

    @Test
    void aHostWriteLandsInTheCmbAndAHostReadLeavesFromItWithNoHostByte() {
        try (Machine m = boot(true); SoftRoceHost rxe = SoftRoceHost.on(m)) {
            long pinned = m.memory().pinnedFrames();
            P2pmemTarget.Result r = P2pmemTarget.run(m, rxe.core(), SIZE);
            assertEquals(P2pmemTarget.Buffer.P2PMEM, r.buffer(), r.why());
            assertTrue(r.why().startsWith("p2pmem of " + PerfOptions.DEFAULT_BDF), r.why());
            assertEquals(Optional.of(MapType.THRU_HOST_BRIDGE), r.hcaMapType(),
                    "rxe1 reaches the CMB through the host bridge");
            assertEquals(0, r.rdmaRead().ramWriteBytes(), "the RDMA READ wrote no host byte: " + r.rdmaRead());
            assertEquals(SIZE, r.rdmaRead().peerWriteBytes(), "every byte went into the NVMe's BAR2: " + r.rdmaRead());
            long n = r.commands();
            assertEquals(n * CQE, r.nvmeWrite().ramWriteBytes(), "the NVMe Write wrote only CQEs: " + r.nvmeWrite());
            assertEquals(n * CQE, r.nvmeRead().ramWriteBytes(), "the NVMe Read wrote only CQEs: " + r.nvmeRead());
            assertEquals(r.nvmeRead().ramReadBytes(), r.nvmeWrite().ramReadBytes(), "both read only SQEs and PRP lists");
            assertTrue(r.nvmeWrite().ramReadBytes() < SIZE / 8, r.nvmeWrite().toString());
            assertEquals(0, r.rdmaWrite().ramReadBytes(), "the RDMA WRITE read no host byte: " + r.rdmaWrite());
            assertEquals(SIZE, r.rdmaWrite().peerReadBytes(), "every byte came from the NVMe's BAR2: " + r.rdmaWrite());
            assertEquals(0, r.bufferBytesInRam());
            assertTrue(r.report().contains("host RAM:     0 bytes of the data buffer"), r.report());
            assertEquals(pinned, m.memory().pinnedFrames(), "nothing left pinned");
            assertTrue(DmaBufs.of(m).list().isEmpty(), "no dma-buf left");
            assertEquals(0, rxe.core().device(P2pmemTarget.HCA).orElseThrow().objectCount(), "no verbs object left");
            assertEquals(Optional.empty(), P2pDma.of(m).memory(m.pci().function(PerfOptions.DEFAULT_BDF)),
                    "the driver unbound and took its p2pmem back");
        }
    }

    @Test
    void withoutAPeerPathFindManyFindsNothingAndTheBufferIsHostMemory() {
        try (Machine m = boot(false); SoftRoceHost rxe = SoftRoceHost.on(m)) {
            long pinned = m.memory().pinnedFrames();
            P2pmemTarget.Result r = P2pmemTarget.run(m, rxe.core(), SIZE);
            assertEquals(P2pmemTarget.Buffer.HOST_MEMORY, r.buffer());
            assertTrue(r.why().startsWith("pci_p2pmem_find_many: no published p2pmem reaches"), r.why());
            assertEquals(SIZE, r.rdmaRead().ramWriteBytes(), "the RDMA READ lands in host RAM: " + r.rdmaRead());
            assertEquals(0, r.rdmaRead().peerWriteBytes());
            assertEquals(4 * SIZE, r.bufferBytesInRam(), "each byte crosses host RAM four times");
            assertEquals(Optional.empty(), r.hcaMapType());
            assertTrue(r.report().contains("HOST_MEMORY") && r.report().contains("p2pdma:       none"), r.report());
            assertEquals(pinned, m.memory().pinnedFrames(), "nothing left pinned");
            assertTrue(DmaBufs.of(m).list().isEmpty(), "no dma-buf left");
            assertEquals(0, rxe.core().device(P2pmemTarget.HCA).orElseThrow().objectCount(), "no verbs object left");
        }
    }

    @Test
    void whenThePublishedP2pmemIsUsedUpTheBufferIsHostMemory() {
        try (Machine m = boot(true); SoftRoceHost rxe = SoftRoceHost.on(m)) {
            NvmePciDriver driver = new NvmePciDriver(m);
            m.devices().registerDriver(driver);
            try {
                P2pMemory cmb = driver.controller().cmb().orElseThrow();
                P2pAllocation hog = cmb.alloc(NvmeCmb.CMB_BYTES);
                P2pmemTarget.Result r = P2pmemTarget.run(m, rxe.core(), driver.controller(), SIZE);
                assertEquals(P2pmemTarget.Buffer.HOST_MEMORY, r.buffer());
                assertTrue(r.why().startsWith("pci_alloc_p2pmem of " + PerfOptions.DEFAULT_BDF + " failed"), r.why());
                assertEquals(0, cmb.available());
                cmb.free(hog);
                assertEquals(NvmeCmb.CMB_BYTES, cmb.available(), "nothing of the run left allocated");
            } finally {
                m.devices().unregisterDriver(driver);
            }
        }
    }

    /**
     * The HCA reaches p2pmem only over a peer path: on the default machine (host bridge not on p2pdma's whitelist)
     * registering CMB p2pmem on rxe1 is EOPNOTSUPP naming {@code pci_p2pdma_distance}'s reason, and nothing stays
     * attached, mapped or registered; mapping it for rxe1 directly is EREMOTEIO, as {@code dma_map_sgtable} returns.
     */
    @Test
    void withoutAPeerPathTheHcaCannotRegisterCmbP2pmem() {
        try (Machine m = boot(false); SoftRoceHost rxe = SoftRoceHost.on(m)) {
            NvmePciDriver driver = new NvmePciDriver(m);
            m.devices().registerDriver(driver);
            try {
                P2pDma p2p = P2pDma.of(m);
                P2pMemory cmb = driver.controller().cmb().orElseThrow();
                P2pAllocation a = cmb.alloc(8192);
                assertEquals(Errno.EREMOTEIO, assertThrows(ErrnoException.class, () -> p2p.mapSg(
                        m.pci().function(P2pmemTarget.HCA_BDF), a, DmaDirection.BIDIRECTIONAL)).errno());
                DmaBuf buf = P2pmemDmaBuf.export(DmaBufs.of(m), p2p, a);
                try (RdmaEnd hca = new RdmaEnd(m, rxe.core(), P2pmemTarget.HCA)) {
                    ErrnoException e = assertThrows(ErrnoException.class,
                            () -> hca.pd().regDmabufMr(0, 8192, 0x10000, buf, RdmaEnd.ACCESS));
                    assertEquals(Errno.EOPNOTSUPP, e.errno(), e.getMessage());
                    assertTrue(e.getMessage().contains("pci_p2pdma_distance"), e.getMessage());
                    assertTrue(buf.attachments().isEmpty(), "nothing left attached");
                }
                buf.put();
                cmb.free(a);
                assertEquals(NvmeCmb.CMB_BYTES, cmb.available(), "nothing left allocated or mapped");
                assertTrue(DmaBufs.of(m).list().isEmpty());
                assertEquals(0, rxe.core().device(P2pmemTarget.HCA).orElseThrow().objectCount());
            } finally {
                m.devices().unregisterDriver(driver);
            }
        }
    }

    @Test
    void badSizesAreEinvalAndLeaveNothing() {
        try (Machine m = boot(true); SoftRoceHost rxe = SoftRoceHost.on(m)) {
            NvmePciDriver driver = new NvmePciDriver(m);
            m.devices().registerDriver(driver);
            try {
                P2pMemory cmb = driver.controller().cmb().orElseThrow();
                for (long bad : new long[]{0, -4096, 100, NvmeCmb.CMB_BYTES + 4096}) {
                    ErrnoException e = assertThrows(ErrnoException.class,
                            () -> P2pmemTarget.run(m, rxe.core(), driver.controller(), bad));
                    assertEquals(Errno.EINVAL, e.errno(), e.getMessage());
                    assertTrue(e.getMessage().contains("-o " + bad), e.getMessage());
                }
                assertEquals(NvmeCmb.CMB_BYTES, cmb.available());
                assertTrue(DmaBufs.of(m).list().isEmpty());
                ErrnoException e = assertThrows(ErrnoException.class,
                        () -> driver.controller().io(1, 0, 0x1000, 100));
                assertEquals(Errno.EINVAL, e.errno(), "not whole blocks: " + e.getMessage());
            } finally {
                m.devices().unregisterDriver(driver);
            }
        }
    }

    @Test
    void nvmeCmbP2pmemOnTheCommandLine() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{"cmb", "--p2pmem", "--p2p-machine", "-o", "65536"}, print(out), print(err));
        String text = out.toString(StandardCharsets.UTF_8);
        assertEquals(0, status, err.toString(StandardCharsets.UTF_8));
        assertTrue(text.contains("P2PMEM") && text.contains("65536 bytes match both ways")
                && text.contains("host RAM:     0 bytes"), text);
        out.reset();
        assertEquals(0, Main.run(new String[]{"cmb", "--p2pmem", "-o", "65536"}, print(out), print(err)),
                err.toString(StandardCharsets.UTF_8));
        assertTrue(out.toString(StandardCharsets.UTF_8).contains("HOST_MEMORY (pci_p2pmem_find_many"), out.toString());
        out.reset();
        err.reset();
        assertEquals(1, Main.run(new String[]{"cmb", "--p2pmem", "-o", "1000"}, print(out), print(err)));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("-o 1000"), err.toString());
        assertEquals("", out.toString(StandardCharsets.UTF_8));
    }

    private static PrintStream print(ByteArrayOutputStream b) {
        return new PrintStream(b, true, StandardCharsets.UTF_8);
    }
}
