package dev.dmaplane.nvmeuser;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.vfio.VfioUapi;
import dev.dmaplane.vfio.VfioUser;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The dma-buf fd vfio-pci returns for a range of the NVMe controller memory buffer
 * ({@code VFIO_DEVICE_FEATURE_DMA_BUF}, drivers/vfio/pci/vfio_pci_dmabuf.c) given straight to
 * {@code ibv_reg_dmabuf_mr(pd, offset, length, iova, fd, access)} by the same process, as one descriptor table
 * ({@code files_struct}) allows: {@code ib_umem_dmabuf_get} resolves it with {@code dma_buf_get(fd)}
 * (drivers/dma-buf/dma-buf.c), which answers {@code EBADF} for a number that is not open and {@code EINVAL} for an
 * open file that is not a dma-buf; without a peer path ({@code pci_p2pdma_distance} NOT_SUPPORTED) vfio-pci's
 * attach refuses the HCA with {@code EOPNOTSUPP}.
 */
class CmbDmaBufFdTest {
    private static final long SIZE = 64 * 1024;
    private static final long IOVA = 0x7e00_0000_0000L;

    private static Machine boot(boolean peerPath) {
        return Machine.boot(TopologyLoader.load(NvmeCmb.machineText(peerPath), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT);
    }

    private static NvmeController attach(Machine m) {
        return NvmeController.attach(m, PerfOptions.DEFAULT_BDF, NvmeController.Options.DEFAULT);
    }

    /** A dma-buf fd of the first {@code SIZE} bytes of the controller memory buffer. */
    private static int exportCmb(NvmeController c, ControllerMemoryBuffer cmb) {
        return c.frontEnd().device().exportDmaBuf(cmb.bar(), new long[]{cmb.barOffset(), SIZE});
    }

    @Test
    void anRdmaWriteThroughTheVfioDmaBufFdLandsInTheBar() {
        try (Machine m = boot(true); SoftRoceHost rxe = SoftRoceHost.on(m); NvmeController c = attach(m)) {
            long pinned = m.memory().pinnedFrames();
            ControllerMemoryBuffer cmb = ControllerMemoryBuffer.enable(c);
            VfioUser user = c.frontEnd().user();
            int fd = exportCmb(c, cmb);
            byte[] written = new byte[(int) SIZE];
            new Random(13).nextBytes(written);
            try (RdmaEnd near = new RdmaEnd(rxe.core(), NvmeCmb.NEAR, user.mm());
                 RdmaEnd far = new RdmaEnd(m, rxe.core(), NvmeCmb.FAR)) {
                RdmaEnd.connect(near, far);
                MemoryRegion mr = near.pd().regDmabufMr(0, SIZE, IOVA, fd, RdmaEnd.ACCESS);
                user.close(fd); // the region holds its own reference, as ib_umem_dmabuf does after dma_buf_get
                try {
                    long src = far.buffer(SIZE);
                    MemoryRegion farMr = far.pd().regMr(src, SIZE, RdmaEnd.ACCESS);
                    far.mm().write(src, MemorySegment.ofArray(written));
                    far.transfer(true, src, farMr.lkey(), IOVA, mr.rkey(), SIZE);
                } finally {
                    mr.destroy();
                }
            }
            byte[] bar = new byte[(int) SIZE];
            c.frontEnd().device().read(VfioUapi.VFIO_PCI_BAR0_REGION_INDEX + cmb.bar(), cmb.barOffset(),
                    MemorySegment.ofArray(bar));
            assertArrayEquals(written, bar, "the RDMA WRITE landed in the controller memory buffer");
            assertTrue(DmaBufs.of(m).list().isEmpty(), "the last reference went with the region");
            assertEquals(pinned, m.memory().pinnedFrames(), "nothing left pinned");
        }
    }

    @Test
    void withoutAPeerPathTheFdFormIsEopnotsuppAndRegistersNothing() {
        try (Machine m = boot(false); SoftRoceHost rxe = SoftRoceHost.on(m); NvmeController c = attach(m)) {
            ControllerMemoryBuffer cmb = ControllerMemoryBuffer.enable(c);
            VfioUser user = c.frontEnd().user();
            int fd = exportCmb(c, cmb);
            try (RdmaEnd near = new RdmaEnd(rxe.core(), NvmeCmb.NEAR, user.mm())) {
                RdmaDevice hca = near.device();
                int objects = hca.objectCount();
                ErrnoException e = assertThrows(ErrnoException.class,
                        () -> near.pd().regDmabufMr(0, SIZE, IOVA, fd, RdmaEnd.ACCESS));
                assertEquals(Errno.EOPNOTSUPP, e.errno(), e.getMessage());
                assertTrue(e.getMessage().contains("pci_p2pdma_distance"), e.getMessage());
                assertEquals(objects, hca.objectCount(), "no region registered");
                DmaBuf buf = user.dmaBuf(fd);
                assertTrue(buf.attachments().isEmpty(), "nothing left attached");
                buf.put();
            }
            assertTrue(user.isOpen(fd), "the refusal leaves the fd open");
            user.close(fd);
            assertTrue(DmaBufs.of(m).list().isEmpty());
        }
    }

    @Test
    void aClosedDmaBufFdIsEbadfAndAVfioDeviceFdIsEinval() {
        try (Machine m = boot(true); SoftRoceHost rxe = SoftRoceHost.on(m); NvmeController c = attach(m)) {
            ControllerMemoryBuffer cmb = ControllerMemoryBuffer.enable(c);
            VfioUser user = c.frontEnd().user();
            int fd = exportCmb(c, cmb);
            user.close(fd);
            try (RdmaEnd near = new RdmaEnd(rxe.core(), NvmeCmb.NEAR, user.mm())) {
                int objects = near.device().objectCount();
                ErrnoException closed = assertThrows(ErrnoException.class,
                        () -> near.pd().regDmabufMr(0, SIZE, IOVA, fd, RdmaEnd.ACCESS));
                assertEquals(Errno.EBADF, closed.errno(), closed.getMessage());
                int device = c.frontEnd().device().fd();
                ErrnoException notDmaBuf = assertThrows(ErrnoException.class,
                        () -> near.pd().regDmabufMr(0, SIZE, IOVA, device, RdmaEnd.ACCESS));
                assertEquals(Errno.EINVAL, notDmaBuf.errno(), notDmaBuf.getMessage());
                assertEquals(objects, near.device().objectCount(), "no region registered");
            }
            assertTrue(user.isOpen(c.frontEnd().device().fd()), "the device fd is untouched");
            assertFalse(user.isOpen(fd));
            assertTrue(DmaBufs.of(m).list().isEmpty());
        }
    }
}
