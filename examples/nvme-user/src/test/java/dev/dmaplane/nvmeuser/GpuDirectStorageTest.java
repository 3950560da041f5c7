package dev.dmaplane.nvmeuser;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.Placement;
import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.driver.gpu.host.GpuHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.EnumSet;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * GPUDirect-Storage style reads of NVMe blocks into a GPU's VRAM given as its dma-buf, decided by p2pdma as
 * drivers/pci/p2pdma.c ({@code pci_p2pdma_distance}) judges the GPU (provider) and the NVMe (client): on the default
 * machine the two sit under different root ports of a host bridge that allows no peer-to-peer, so the path is
 * NOT_SUPPORTED and the bytes bounce through host memory, named and counted, and land in VRAM exactly, while the
 * direct path answers EOPNOTSUPP with p2pdma's reason. On the shipped gds-p2p-machine.yaml (host bridge
 * whitelisted: THRU_HOST_BRIDGE) the NVMe, opened through iommufd, reads straight into VRAM through
 * IOMMU_IOAS_MAP_FILE of the GPU's dma-buf (drivers/iommu/iommufd/pages.c {@code iopt_map_dmabuf}, going beyond
 * the kernel, which takes vfio-pci's dma-bufs only): no host byte per delivered byte, as the NVMe's own DMA
 * counters show.
 */
class GpuDirectStorageTest {
    private static final String GPU = "0000:03:00.0";
    private final Machine machine = Machine.bootDefault();
    private final GpuHost gpus = GpuHost.on(machine);

    @AfterEach
    void close() {
        gpus.close();
        machine.close();
    }

    @Test
    void onTheDefaultMachineTheReadBouncesThroughHostMemory() {
        int size = 512 * 1024;
        byte[] data = new byte[size];
        new Random(77).nextBytes(data);
        AccelContext ctx = gpus.devices().getFirst().open();
        try (NvmeController c = NvmeController.attach(machine, NvmeControllerTest.NVME, NvmeController.Options.DEFAULT)) {
            QueuePair qp = c.createIoQueuePair(8, c.identity().maxTransfer(), false);
            try (DmaRegion src = DmaRegion.allocate(c.frontEnd(), size)) {
                src.write(0, MemorySegment.ofArray(data));
                for (long off = 0; off < size; off += c.identity().maxTransfer()) {
                    c.io(qp, NvmeCommand.NVM_WRITE, 4096 + off / 512, src, off, c.identity().maxTransfer());
                }
            }
            int bo = ctx.createBo(2L << 20, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));
            DmaBuf vram = ctx.primeExport(bo);
            try {
                PciFunction gpu = machine.pci().function(GPU);
                GpuDirectStorage.Transfer t = GpuDirectStorage.read(machine, c, qp, gpu, vram, 4096, 4096, size);
                assertEquals(MapType.NOT_SUPPORTED, t.mapType(), t.reason());
                assertEquals("bounce through host memory", t.path());
                assertEquals(size, t.bytes());
                assertEquals(size, t.bouncedBytes(), "every byte bounced");
                assertEquals(size / c.identity().maxTransfer(), t.bounces(), "one bounce per 128 KiB read");
                MemorySegment back = MemorySegment.ofArray(new byte[size]);
                vram.resv().lock();
                try {
                    vram.cpuRead(4096, back);
                } finally {
                    vram.resv().unlock();
                }
                assertArrayEquals(data, back.toArray(ValueLayout.JAVA_BYTE), "the NVMe's bytes are in VRAM");
                ErrnoException e = assertThrows(ErrnoException.class,
                        () -> GpuDirectStorage.read(machine, c, qp, gpu, vram, (2L << 20) - 4096, 0, 8192));
                assertEquals(Errno.EINVAL, e.errno(), "past the dma-buf's end: " + e.getMessage());
            } finally {
                vram.put();
            }
        } finally {
            ctx.close();
        }
    }

    @Test
    void onTheDefaultMachineTheDirectPathIsEopnotsuppWithP2pdmasReason() {
        AccelContext ctx = gpus.devices().getFirst().open();
        try (NvmeController c = NvmeController.attach(machine, NvmeControllerTest.NVME,
                NvmeController.Options.DEFAULT.withIommufd(true))) {
            QueuePair qp = c.createIoQueuePair(8, 4096, false);
            DmaBuf vram = ctx.primeExport(ctx.createBo(2L << 20, Placement.VISIBLE_VRAM,
                    EnumSet.of(Placement.VISIBLE_VRAM)));
            try {
                ErrnoException e = assertThrows(ErrnoException.class, () -> GpuDirectStorage.readDirect(machine, c,
                        qp, machine.pci().function(GPU), vram, 0, 0, 4096));
                assertEquals(Errno.EOPNOTSUPP, e.errno());
                assertTrue(e.getMessage().contains("pci_p2pdma_distance"), e.getMessage());
            } finally {
                vram.put();
            }
        } finally {
            ctx.close();
        }
    }

    @Test
    void onTheShippedPeerMachineTheReadGoesStraightIntoVram() {
        int size = 512 * 1024;
        byte[] data = new byte[size];
        new Random(78).nextBytes(data);
        try (Machine m = Machine.boot(TopologyLoader.load(GpuDirectStorage.peerMachineText(),
                TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
             GpuHost host = GpuHost.on(m)) {
            AccelContext ctx = host.devices().getFirst().open();
            try (NvmeController c = NvmeController.attach(m, NvmeControllerTest.NVME,
                    NvmeController.Options.DEFAULT.withIommufd(true))) {
                long chunk = c.identity().maxTransfer();
                QueuePair qp = c.createIoQueuePair(8, chunk, false);
                try (DmaRegion src = DmaRegion.allocate(c.frontEnd(), size)) {
                    src.write(0, MemorySegment.ofArray(data));
                    for (long off = 0; off < size; off += chunk) {
                        c.io(qp, NvmeCommand.NVM_WRITE, 4096 + off / 512, src, off, chunk);
                    }
                }
                DmaBuf vram = ctx.primeExport(ctx.createBo(2L << 20, Placement.VISIBLE_VRAM,
                        EnumSet.of(Placement.VISIBLE_VRAM)));
                try {
                    PciFunction nvme = m.pci().function(NvmeControllerTest.NVME);
                    DmaTraffic before = nvme.dma().traffic();
                    GpuDirectStorage.Transfer t = GpuDirectStorage.readDirect(m, c, qp, m.pci().function(GPU), vram,
                            8192, 4096, size);
                    DmaTraffic moved = nvme.dma().traffic().minus(before);
                    assertEquals(MapType.THRU_HOST_BRIDGE, t.mapType(), t.reason());
                    assertEquals(GpuDirectStorage.DIRECT, t.path());
                    assertEquals(size, t.bytes());
                    assertEquals(0, t.bouncedBytes(), "nothing bounced");
                    assertEquals(0.0, t.hostBytesPerByte());
                    assertEquals(size, moved.peerWriteBytes(), "every byte written into the GPU's BAR");
                    assertEquals(size / chunk * 16, moved.ramWriteBytes(), "host RAM got the completions only");
                    MemorySegment back = MemorySegment.ofArray(new byte[size]);
                    vram.resv().lock();
                    try {
                        vram.cpuRead(8192, back);
                    } finally {
                        vram.resv().unlock();
                    }
                    assertArrayEquals(data, back.toArray(ValueLayout.JAVA_BYTE), "the NVMe's bytes are in VRAM");
                    assertTrue(vram.attachments().isEmpty(), "the IOAS mapping was undone");
                } finally {
                    vram.put();
                }
            } finally {
                ctx.close();
            }
        }
    }

    /**
     * With the host bridge allowing peer-to-peer (p2pdma's whitelist), the path is THRU_HOST_BRIDGE: the read is
     * refused with EOPNOTSUPP naming why (the container front end cannot map the dma-buf for the device), never
     * bounced silently, and nothing lands in VRAM.
     */
    @Test
    void aPeerPathTheFrontEndCannotMapIsEopnotsupp() {
        String text = TopologyLoader.defaultMachineText();
        assertTrue(text.contains("p2pAllowed: false"));
        try (Machine m = Machine.boot(TopologyLoader.load(text.replace("p2pAllowed: false", "p2pAllowed: true"),
                TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
             GpuHost host = GpuHost.on(m)) {
            AccelContext ctx = host.devices().getFirst().open();
            try (NvmeController c = NvmeController.attach(m, NvmeControllerTest.NVME, NvmeController.Options.DEFAULT)) {
                QueuePair qp = c.createIoQueuePair(8, 4096, false);
                int bo = ctx.createBo(2L << 20, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));
                DmaBuf vram = ctx.primeExport(bo);
                try {
                    ErrnoException e = assertThrows(ErrnoException.class, () -> GpuDirectStorage.read(m, c, qp,
                            m.pci().function(GPU), vram, 0, 0, 4096));
                    assertEquals(Errno.EOPNOTSUPP, e.errno());
                    assertTrue(e.getMessage().contains("THRU_HOST_BRIDGE") && e.getMessage().contains("iommufd"),
                            e.getMessage());
                } finally {
                    vram.put();
                }
            } finally {
                ctx.close();
            }
        }
    }
}
