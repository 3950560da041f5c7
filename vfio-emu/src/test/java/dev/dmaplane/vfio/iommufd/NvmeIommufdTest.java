package dev.dmaplane.vfio.iommufd;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuFault;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
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
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collections;
import java.util.List;
import java.util.Random;

import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The default machine's NVMe controller ({@code model: nvme}, 0000:06:00.0) driven from user space over iommufd, as
 * Documentation/userspace-api/iommufd.rst and drivers/vfio/device_cdev.c describe the flow (open the cdev, bind,
 * attach, map with IOMMU_IOAS_MAP) and as SPDK's vfio-user path drives it (IOVA = VA, polled queue pairs): random
 * data written to LBAs and read back, the IOMMU_HWPT_GET_DIRTY_BITMAP of include/uapi/linux/iommufd.h equal bit for
 * bit to the buffer pages the controller's Reads wrote (drivers/iommu/iommufd/io_pagetable.c,
 * {@code iopt_read_and_clear_dirty_data}), a transfer outside the IOAS an IOMMU fault that the controller reports
 * as a Data Transfer Error with no byte of the namespace changed (NVM Express Base Specification 2.0, 4.2.3), and
 * close leaving nothing pinned, mapped, attached or owned.
 */
class NvmeIommufdTest {
    private static final String NVME = "0000:06:00.0";
    private static final long MIB = 1 << 20;
    private static final long PAGE = 4096;
    private static final int LBA = 512;
    private static final int BLOCKS_PER_PAGE = (int) (PAGE / LBA);

    private final Machine machine = Machine.boot(TopologyLoader.load(TopologyLoader.defaultMachineText(),
            TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("spdk");
    private final VfioUser user = vfio.open(mm, 64 * MIB);
    private final PciFunction fn;
    private final IommuGroup group;
    private final long pinsBefore = machine.memory().pinsOutstanding();

    NvmeIommufdTest() {
        DeviceCore core = machine.devices();
        core.registerDriver(vfio.driver());
        fn = machine.pci().function(NVME);
        core.setDriverOverride(fn, "vfio-pci");
        core.reprobe(fn);
        group = machine.iommu().groupOf(fn).orElseThrow();
    }

    @AfterEach
    void close() {
        user.close();
        assertEquals(0, vfio.pinnedPages(), "iommufd pins nothing after close");
        assertEquals(pinsBefore, machine.memory().pinsOutstanding(), "no page pinned after close");
        assertEquals(0, user.lockedBytes(), "locked_vm back to 0");
        assertTrue(machine.iommu().domains().stream().noneMatch(d -> d.type() == IommuDomainType.UNMANAGED),
                "every HWPT's domain was freed");
        assertEquals(IommuDomainType.DMA, group.domain().type(), "the group is the DMA API's again");
        assertNull(group.owner(), "and owned by no one");
        mm.close();
        machine.close();
    }

    private byte[] page(long va) {
        byte[] b = new byte[(int) PAGE];
        mm.read(va, MemorySegment.ofArray(b));
        return b;
    }

    @Test
    void theDirtyBitmapIsExactlyThePagesTheControllersReadsWrote() {
        Iommufd fd = Iommufd.open(user);
        int ioas = fd.ioasAlloc();
        DeviceCdev cdev = DeviceCdev.open(user, NVME);
        int dev = cdev.bind(fd);
        int hwpt = fd.hwptAlloc(dev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
        assertEquals(hwpt, cdev.attach(hwpt));
        NvmeUserDriver nvme = new NvmeUserDriver(mm, fd, cdev, ioas);

        Random rnd = new Random(2026);
        int n = 16;
        NvmeUserDriver.Buf src = nvme.buffer(n * PAGE);
        NvmeUserDriver.Buf dst = nvme.buffer(32 * PAGE);
        byte[][] data = new byte[n][(int) PAGE];
        long[] lbas = new long[n];
        for (int i = 0; i < n; i++) {
            rnd.nextBytes(data[i]);
            mm.write(src.va(i * PAGE), MemorySegment.ofArray(data[i]));
            lbas[i] = (long) i * 1000 * BLOCKS_PER_PAGE + rnd.nextInt(900) * BLOCKS_PER_PAGE;
            NvmeCompletion w = nvme.io(NvmeCommand.NVM_WRITE, lbas[i], BLOCKS_PER_PAGE, src.iova(i * PAGE), 0);
            assertTrue(w.ok(), "Write " + i + ": " + w);
        }

        fd.setDirtyTracking(hwpt, true);
        assertEquals(new BitSet(), fd.dirtyBitmap(hwpt, dst.iova(), 32 * PAGE, PAGE, 0), "clean once tracking starts");
        List<Integer> slots = new ArrayList<>();
        for (int p = 0; p < 32; p++) {
            slots.add(p);
        }
        Collections.shuffle(slots, rnd);
        BitSet expected = new BitSet();
        for (int i = 0; i < n; i++) {
            int p = slots.get(i);
            expected.set(p);
            NvmeCompletion r = nvme.io(NvmeCommand.NVM_READ, lbas[i], BLOCKS_PER_PAGE, dst.iova(p * PAGE), 0);
            assertTrue(r.ok(), "Read " + i + ": " + r);
        }
        BitSet dirty = fd.dirtyBitmap(hwpt, dst.iova(), 32 * PAGE, PAGE, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR);
        assertEquals(expected, dirty, "bit for bit the pages the Reads wrote");
        for (int p = 0; p < 32; p++) {
            int i = slots.indexOf(p);
            assertArrayEquals(i < n ? data[i] : new byte[(int) PAGE], page(dst.va(p * PAGE)),
                    "page " + p + (i < n ? " holds LBA " + lbas[i] : " untouched"));
        }
        assertEquals(new BitSet(), fd.dirtyBitmap(hwpt, src.iova(), n * PAGE, PAGE, 0), "Writes only read host memory");
        assertTrue(fd.dirtyBitmap(hwpt, nvme.ioCq().iova(), PAGE, PAGE, 0).get(0), "completions posted in the CQ");
        assertEquals(expected, fd.dirtyBitmap(hwpt, dst.iova(), 32 * PAGE, PAGE, 0), "NO_CLEAR kept them");
        assertEquals(new BitSet(), fd.dirtyBitmap(hwpt, dst.iova(), 32 * PAGE, PAGE, 0), "this read cleared them");
        cdev.close();
        fd.close();
    }

    @Test
    void aDmaOutsideTheIoasIsAnIommuFaultWithNoByteChanged() {
        Iommufd fd = Iommufd.open(user);
        int ioas = fd.ioasAlloc();
        DeviceCdev cdev = DeviceCdev.open(user, NVME);
        cdev.bind(fd);
        cdev.attach(ioas);
        NvmeUserDriver nvme = new NvmeUserDriver(mm, fd, cdev, ioas);
        NvmeUserDriver.Buf buf = nvme.buffer(2 * PAGE);
        byte[] before = new byte[(int) (2 * PAGE)];
        new Random(7).nextBytes(before);
        mm.write(buf.va(), MemorySegment.ofArray(before));
        assertTrue(nvme.io(NvmeCommand.NVM_WRITE, 800, 2 * BLOCKS_PER_PAGE, buf.iova(), buf.iova(PAGE)).ok());

        long outside = 0xc000_0000L;
        byte[] other = new byte[(int) PAGE];
        new Random(8).nextBytes(other);
        mm.write(buf.va(), MemorySegment.ofArray(other));
        int faults = machine.iommu().faults().size();
        NvmeCompletion w = nvme.io(NvmeCommand.NVM_WRITE, 800, 2 * BLOCKS_PER_PAGE, buf.iova(), outside);
        assertEquals(NvmeStatus.DATA_TRANSFER_ERROR, w.code(), "its second page is outside the IOAS: " + w);
        IommuFault f = machine.iommu().faults().getLast();
        assertTrue(machine.iommu().faults().size() > faults && f.iova() == outside && !f.write(),
                "an IOMMU fault on the read of the IOVA outside: " + f);

        mm.write(buf.va(), MemorySegment.ofArray(new byte[(int) (2 * PAGE)]));
        assertTrue(nvme.io(NvmeCommand.NVM_READ, 800, 2 * BLOCKS_PER_PAGE, buf.iova(), buf.iova(PAGE)).ok());
        byte[] after = new byte[(int) (2 * PAGE)];
        mm.read(buf.va(), MemorySegment.ofArray(after));
        assertArrayEquals(before, after, "no byte of the namespace changed");

        faults = machine.iommu().faults().size();
        NvmeCompletion r = nvme.io(NvmeCommand.NVM_READ, 800, BLOCKS_PER_PAGE, outside + PAGE, 0);
        assertEquals(NvmeStatus.DATA_TRANSFER_ERROR, r.code(), "a Read into an IOVA outside: " + r);
        assertTrue(machine.iommu().faults().size() > faults && machine.iommu().faults().getLast().write(),
                "a write fault: " + machine.iommu().faults().getLast());

        fd.unmap(ioas, buf.iova(), 2 * PAGE);
        NvmeCompletion gone = nvme.io(NvmeCommand.NVM_READ, 800, BLOCKS_PER_PAGE, buf.iova(), 0);
        assertEquals(NvmeStatus.DATA_TRANSFER_ERROR, gone.code(), "unmapped now: " + gone);
        user.close(fd.fd());
        assertTrue(vfio.pinnedPages() > 0, "the bound cdev keeps the iommufd and its mappings");
        cdev.close();
    }

    @Test
    void closingTheIommufdFirstThenTheCdevLeavesNothing() {
        Iommufd fd = Iommufd.open(user);
        int ioas = fd.ioasAlloc();
        DeviceCdev cdev = DeviceCdev.open(user, NVME);
        int dev = cdev.bind(fd);
        cdev.attach(fd.hwptAlloc(dev, ioas, 0));
        NvmeUserDriver nvme = new NvmeUserDriver(mm, fd, cdev, ioas);
        NvmeUserDriver.Buf buf = nvme.buffer(PAGE);
        assertTrue(nvme.io(NvmeCommand.NVM_READ, 0, BLOCKS_PER_PAGE, buf.iova(), 0).ok());
        assertTrue(vfio.pinnedPages() >= 5, "queues and buffer pinned: " + vfio.pinnedPages());
        fd.close();
        assertEquals(IommuDomainType.UNMANAGED, group.domain().type(), "still attached while the cdev is bound");
        cdev.close();
        assertEquals(0, vfio.pinnedPages());
        assertThrows(ErrnoException.class, () -> fd.ioasAlloc(), "the descriptor is closed");
        assertEquals(Errno.EBADF, assertThrows(ErrnoException.class, fd::ioasAlloc).errno());
    }
}
