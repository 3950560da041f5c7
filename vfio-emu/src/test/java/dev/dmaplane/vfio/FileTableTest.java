package dev.dmaplane.vfio;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufHandle;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UContext;
import dev.dmaplane.resource.UObject;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.vfio.VfioTestMachine.fails;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One descriptor table per process ({@code struct files_struct}, fs/file.c): VFIO's files take the lowest free
 * number ({@code alloc_fd}) of the same table as every other file of the process ({@code AddressSpace.files()}),
 * {@code close(2)} closes any of them whichever path installed it, a dma-buf fd from
 * {@code VFIO_DEVICE_FEATURE_DMA_BUF} is what {@code dma_buf_get(fd)} (drivers/dma-buf/dma-buf.c) resolves, and the
 * process's exit ({@code exit_files}) releases each file once. The exporter is the NVMe 06:00.0 with BAR2 memory.
 */
class FileTableTest {
    private static final String NVME = "0000:06:00.0";
    private static final long PAGE = 4096;
    private static final String BAR0 = "                - { index: 0, size: 16KiB, kind: mmio }\n";

    private Machine machine;
    private AddressSpace mm;
    private VfioUser user;
    private int groupId;

    /** Another subsystem's file of the same process, counting its releases. */
    private static final class OtherFile extends UObject {
        final AtomicInteger releases = new AtomicInteger();

        OtherFile() {
            super("other");
        }

        @Override
        protected void release(RemoveReason reason) {
            releases.incrementAndGet();
        }
    }

    @BeforeEach
    void boot() {
        String text = TopologyLoader.defaultMachineText()
                .replace(BAR0, BAR0 + "                - { index: 2, size: 1MiB, kind: memory }\n");
        machine = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
        Vfio vfio = Vfio.of(machine);
        DeviceCore core = machine.devices();
        core.registerDriver(vfio.driver());
        PciFunction nvme = machine.pci().function(NVME);
        core.setDriverOverride(nvme, "vfio-pci");
        core.reprobe(nvme);
        groupId = machine.iommu().groupOf(nvme).orElseThrow().id();
        mm = machine.newAddressSpace("user");
        user = vfio.open(mm, 64 << 20);
    }

    @AfterEach
    void close() {
        user.close();
        mm.close();
        machine.close();
    }

    /** Container, group and device as a Type1 user opens them; the device of the returned record. */
    private VfioDevice openDevice(VfioUser u) {
        VfioContainer c = VfioContainer.open(u);
        VfioGroup g = VfioGroup.open(u, groupId);
        g.setContainer(c);
        c.setIommu(VfioUapi.VFIO_TYPE1v2_IOMMU);
        return VfioDevice.open(g, NVME);
    }

    @Test
    void vfioFilesAndOtherFilesShareTheLowestFreeNumbers() {
        UContext files = mm.files();
        OtherFile first = files.register(new OtherFile());
        VfioDevice dev = openDevice(user);
        OtherFile second = files.register(new OtherFile());
        int eventfd = user.openEventfd();
        int dmabuf = dev.exportDmaBuf(2, new long[]{0, PAGE});
        List<Integer> numbers = List.of(first.handle(), 1, 2, 3, second.handle(), eventfd, dmabuf);
        assertEquals(List.of(0, 1, 2, 3, 4, 5, 6), numbers, "other, container, group, device, other, eventfd, dma-buf");
        assertEquals(7, files.objects().size(), "every file in the one table");

        files.destroy(second.handle());
        assertEquals(4, user.openEventfd(), "VFIO reuses the number another subsystem's close freed");
        user.close(eventfd);
        assertEquals(5, files.register(new OtherFile()).handle(), "and the other way round");
        assertEquals(1, second.releases.get());
    }

    @Test
    void closeThroughEitherPathClosesTheFileOnce() {
        OtherFile other = mm.files().register(new OtherFile());
        int container = user.openContainer();
        mm.files().destroy(container);
        assertFalse(user.isOpen(container));
        fails(Errno.EBADF, () -> user.close(container), "closed through the table");
        fails(Errno.EBADF, () -> user.ioctl(container, VfioUapi.VFIO_GET_API_VERSION, 0), "ioctl on it");

        assertTrue(user.isOpen(other.handle()), "VFIO sees the other subsystem's file");
        fails(Errno.ENOTTY, () -> user.ioctl(other.handle(), VfioUapi.VFIO_GET_API_VERSION, 0), "not a VFIO file");
        fails(Errno.EINVAL, () -> user.dmaBuf(other.handle()), "not a dma-buf");
        fails(Errno.EINVAL, () -> user.eventfd(other.handle()), "not an eventfd");
        fails(Errno.EBADFD, () -> user.iommufdAccess(other.handle(), (iova, length) -> { }), "not /dev/iommu");
        user.close(other.handle());
        assertEquals(1, other.releases.get(), "close(2) through VFIO released the other file");
        fails(Errno.EBADF, () -> user.close(other.handle()), "closed twice");
    }

    @Test
    void aVfioDmaBufFdIsADmaBufToEveryoneAndAnyDmaBufFdIsOneToVfio() {
        VfioDevice dev = openDevice(user);
        int fd = dev.exportDmaBuf(2, new long[]{0, 2 * PAGE});
        DmaBuf viaTable = DmaBufs.get(mm.files(), fd);
        DmaBuf viaVfio = user.dmaBuf(fd);
        assertSame(viaVfio, viaTable, "dma_buf_get(fd) finds the buffer VFIO installed");
        assertEquals(2 * PAGE, viaTable.size());
        viaTable.put();
        viaVfio.put();
        fails(Errno.EINVAL, () -> DmaBufs.get(mm.files(), dev.fd()), "a VFIO device fd is no dma-buf");

        DmaBuf exported = user.dmaBuf(fd);
        DmaBufHandle h = exported.fd(mm.files());
        exported.put();
        DmaBuf back = user.dmaBuf(h.handle());
        assertSame(exported, back, "a dma-buf fd installed by another driver is a dma-buf to VFIO");
        back.put();
        user.close(fd);
        user.close(h.handle());
        fails(Errno.EBADF, () -> DmaBufs.get(mm.files(), fd), "closed");
        assertTrue(DmaBufs.of(machine).list().isEmpty(), "the last fd closed released the buffer");
    }

    @Test
    void theProcessExitReleasesEveryFileOnce() {
        OtherFile other = mm.files().register(new OtherFile());
        VfioDevice dev = openDevice(user);
        dev.exportDmaBuf(2, new long[]{0, PAGE});
        user.openEventfd();
        mm.close();
        assertTrue(mm.files().objects().isEmpty());
        assertEquals(1, other.releases.get());
        assertTrue(DmaBufs.of(machine).list().isEmpty(), "the dma-buf went with its fd");
        user.close(); // closes nothing twice: the table closed every file already
        fails(Errno.EBADF, () -> user.openEventfd(), "the process exited");

        AddressSpace next = machine.newAddressSpace("next");
        try (VfioUser u = Vfio.of(machine).open(next, 64 << 20)) {
            VfioDevice again = openDevice(u);
            assertTrue(u.isOpen(again.fd()), "the group was released once, so it opens again");
        } finally {
            next.close();
        }
    }

    @Test
    void closingTheVfioUserClosesItsFilesAndLeavesTheOthers() {
        OtherFile other = mm.files().register(new OtherFile());
        openDevice(user).exportDmaBuf(2, new long[]{0, PAGE});
        List<UObject> before = new ArrayList<>(mm.files().objects());
        assertEquals(5, before.size());
        user.close();
        assertEquals(List.of(other), mm.files().objects(), "only the other subsystem's file is left");
        assertEquals(0, other.releases.get());
        assertTrue(DmaBufs.of(machine).list().isEmpty());
        fails(Errno.EBADF, () -> user.openContainer(), "the user is closed");
        assertEquals(1, mm.files().register(new OtherFile()).handle(), "the numbers are free again");
    }

    /**
     * The process's VFIO side closes its files ({@link VfioUser#close()}, newest first) while another thread closes
     * one of them with {@code close(2)} the moment the exit reaches it and another subsystem takes the freed number at
     * once: the exit closes the file objects it installed, never the new file that holds the number now, as
     * {@code file_close_fd} (fs/file.c) takes out of the table the file it finds there and {@code filp_close} closes
     * that one. Many rounds, each racing the two threads.
     */
    @Test
    void closingTheUserNeverClosesTheFileThatTookANumberItsFileLostMeanwhile() throws Exception {
        int rounds = 300;
        int files = 64;
        int target = files / 2;
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            for (int i = 0; i < rounds; i++) {
                AddressSpace m = machine.newAddressSpace("race-" + i);
                VfioUser u = Vfio.of(machine).open(m, 64 << 20);
                for (int f = 0; f < files; f++) {
                    assertEquals(f, u.openEventfd());
                }
                UObject before = m.files().lookup(target + 1, UObject.class); // closed just before the target
                List<OtherFile> took = new ArrayList<>();
                CyclicBarrier start = new CyclicBarrier(2);
                Future<?> exit = pool.submit(() -> {
                    start.await();
                    u.close();
                    return null;
                });
                Future<?> other = pool.submit(() -> {
                    start.await();
                    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                    while (!before.isDestroyed() && System.nanoTime() < deadline) {
                        Thread.onSpinWait(); // then the exit is about to close the file at number target
                    }
                    try {
                        m.files().destroy(target); // close(2) of the number
                    } catch (ErrnoException e) {
                        return null; // the exit closed it first
                    }
                    took.add(m.files().register(new OtherFile()));
                    return null;
                });
                exit.get(10, TimeUnit.SECONDS);
                other.get(10, TimeUnit.SECONDS);
                for (OtherFile o : took) {
                    assertEquals(0, o.releases.get(), "round " + i + ": fd " + o.handle() + " was closed by the exit");
                    assertSame(o, m.files().lookup(o.handle(), OtherFile.class));
                }
                m.close();
            }
        } finally {
            pool.shutdown();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS), "both sides end");
        }
    }

    /**
     * VFIO and another subsystem open and close files of the same table at once, each closing through the other's
     * path: every number resolves to the file just installed there (none shared), every file is released once,
     * and the table ends empty.
     */
    @Test
    void concurrentOpensAndClosesThroughBothPathsNeverShareANumber() throws Exception {
        UContext files = mm.files();
        int rounds = 500;
        List<OtherFile> others = new ArrayList<>();
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            Future<?> vfioSide = pool.submit(() -> {
                for (int i = 0; i < rounds; i++) {
                    int fd = user.openEventfd();
                    assertNotNull(user.eventfd(fd), "fd " + fd + " is the eventfd just opened");
                    files.destroy(fd);
                }
            });
            Future<?> otherSide = pool.submit(() -> {
                for (int i = 0; i < rounds; i++) {
                    OtherFile o = files.register(new OtherFile());
                    others.add(o);
                    assertSame(o, files.lookup(o.handle(), OtherFile.class), "fd " + o.handle() + " is its own");
                    user.close(o.handle());
                }
            });
            vfioSide.get(30, TimeUnit.SECONDS);
            otherSide.get(30, TimeUnit.SECONDS);
        } finally {
            pool.shutdown();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS), "both sides end");
        }
        assertTrue(files.objects().isEmpty(), "every file closed");
        assertEquals(rounds, others.size());
        assertTrue(others.stream().allMatch(o -> o.releases.get() == 1), "each other file released once");
    }
}
