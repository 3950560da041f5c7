package dev.dmaplane.vfio.iommufd;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuFault;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.vfio.Vfio;
import dev.dmaplane.vfio.VfioUser;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import dev.dmaplane.vfio.nvme.NvmeStatus;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;

import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * NVMe Reads landing directly in a GPU's VRAM through {@code IOMMU_IOAS_MAP_FILE} of the GPU's dma-buf: beyond
 * today's kernel, where {@code iopt_map_dmabuf} (drivers/iommu/iommufd/pages.c) takes physical ranges only from
 * vfio-pci ({@code vfio_pci_dma_buf_iommufd_map}, "future series will ... support DPDK/SPDK type use cases" with GPU
 * drivers); here the VRAM exporter gives its BAR range the same way. A revoke of the buffer (a GPU reset) unmaps the
 * IOVA range ({@code iopt_revoke_notify}): a later Read there is a Data Transfer Error (NVM Express Base
 * Specification 2.0, 4.2.3) with an IOMMU fault and no byte of VRAM written; mapping it again is {@code ENODEV}.
 * The default machine: the NVMe 0000:06:00.0 on vfio-pci, the GPU 0000:03:00.0 with its VRAM in BAR2 (its bare
 * function: the GPU model is drivers/gpu's).
 */
class NvmeIntoVramTest {
    private static final String NVME = "0000:06:00.0";
    private static final long MIB = 1 << 20;
    private static final int PAGE = 4096;
    private static final int LBA = 512;
    private static final int SIZE = 4 * PAGE;
    private static final long VRAM_IOVA = 0x6000_0000L;
    private static final int RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA;

    /** The GPU's model lives in drivers/gpu: here 03:00.0 is its bare function, VRAM in BAR2, as the exporter needs. */
    private static final String GPU_MODEL = "                      model: gpu\n                      properties:\n"
            + "                        vramBar: 2\n";

    private final Machine machine = Machine.boot(TopologyLoader.load(TopologyLoader.defaultMachineText()
            .replace(GPU_MODEL, ""), TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("gds");
    private final VfioUser user = vfio.open(mm, 64 * MIB);
    private final PciFunction gpu = machine.pci().function("0000:03:00.0");
    private final VramExporter vram = new VramExporter(DmaBufs.of(machine), P2pDma.of(machine), gpu, 2,
            VramExporter.Policy.REFUSE);

    NvmeIntoVramTest() {
        DeviceCore core = machine.devices();
        core.registerDriver(vfio.driver());
        PciFunction fn = machine.pci().function(NVME);
        core.setDriverOverride(fn, "vfio-pci");
        core.reprobe(fn);
    }

    @AfterEach
    void close() {
        user.close();
        assertEquals(0, vfio.pinnedPages(), "nothing mapped after close");
        mm.close();
        machine.close();
    }

    private byte[] vramAt(long offset) {
        byte[] b = new byte[SIZE];
        Bar bar = gpu.bar(2).orElseThrow();
        bar.memory().read(offset, MemorySegment.ofArray(b));
        return b;
    }

    @Test
    void readsLandInVramUntilTheGpuRevokesTheBuffer() {
        Iommufd fd = Iommufd.open(user);
        int ioas = fd.ioasAlloc();
        DeviceCdev cdev = DeviceCdev.open(user, NVME);
        cdev.bind(fd);
        cdev.attach(ioas);
        NvmeUserDriver nvme = new NvmeUserDriver(mm, fd, cdev, ioas);
        NvmeUserDriver.Buf host = nvme.buffer(SIZE);
        byte[] data = new byte[SIZE];
        new Random(13).nextBytes(data);
        mm.write(host.va(), MemorySegment.ofArray(data));
        NvmeUserDriver.Buf list = nvme.buffer(PAGE);
        assertTrue(nvme.io(NvmeCommand.NVM_WRITE, 64, SIZE / LBA, host.iova(), list(list, host.iova(), 1)).ok());

        DmaBuf buf = vram.allocate(SIZE);
        long offset = vram.vramOffset(buf);
        int dmabuf = user.installDmaBuf(buf);
        assertEquals(VRAM_IOVA, fd.mapFile(ioas, dmabuf, 0, SIZE, VRAM_IOVA, RW));
        user.close(dmabuf);
        NvmeCompletion r = nvme.io(NvmeCommand.NVM_READ, 64, SIZE / LBA, VRAM_IOVA, list(list, VRAM_IOVA, 1));
        assertTrue(r.ok(), "Read into VRAM: " + r);
        assertArrayEquals(data, vramAt(offset), "the NVMe's data is in VRAM, no host bounce");

        buf.resv().lock();
        try {
            vram.revoke(buf, "test: GPU reset");
        } finally {
            buf.resv().unlock();
        }
        int faults = machine.iommu().faults().size();
        NvmeCompletion gone = nvme.io(NvmeCommand.NVM_READ, 0, PAGE / LBA, VRAM_IOVA, 0);
        assertEquals(NvmeStatus.DATA_TRANSFER_ERROR, gone.code(), "revoked: " + gone);
        IommuFault f = machine.iommu().faults().getLast();
        assertTrue(machine.iommu().faults().size() > faults && f.iova() == VRAM_IOVA && f.write(), "fault: " + f);
        assertArrayEquals(data, vramAt(offset), "no byte of the VRAM it held written");

        int again = user.installDmaBuf(buf);
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class,
                () -> fd.mapFile(ioas, again, 0, SIZE, VRAM_IOVA + SIZE, RW)).errno(), "a revoked buffer");
        user.close(again);
        assertEquals(SIZE, fd.unmap(ioas, VRAM_IOVA, SIZE), "the area stayed until the user's unmap");
        assertTrue(buf.attachments().isEmpty(), "iommufd detached");
        buf.put();
        cdev.close();
        fd.close();
    }

    /** A PRP list in {@code list} for the pages after the first of a transfer from {@code iova}; its IOVA. */
    private long list(NvmeUserDriver.Buf list, long iova, int first) {
        MemorySegment entries = MemorySegment.ofArray(new long[SIZE / PAGE - first]);
        for (int i = first; i < SIZE / PAGE; i++) {
            entries.setAtIndex(ValueLayout.JAVA_LONG, i - first, iova + (long) i * PAGE);
        }
        mm.write(list.va(), entries);
        return list.iova();
    }
}
