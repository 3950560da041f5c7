package dev.dmaplane.vfio;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioTestMachine.*;
import static dev.dmaplane.vfio.VfioUapi.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Interrupts of a vfio-pci device as drivers/vfio/pci/vfio_pci_core.c ({@code vfio_pci_ioctl_get_irq_info},
 * {@code vfio_pci_ioctl_set_irqs}), drivers/vfio/vfio_main.c ({@code vfio_set_irqs_validate_and_prepare}) and
 * drivers/vfio/pci/vfio_pci_intrs.c ({@code vfio_pci_set_msi_trigger}: a second IRQ type EINVAL, ENOTTY for an
 * action an index has not) answer them, with eventfds (fs/eventfd.c) the tests wait on with a bound; and a device
 * removed under its user as {@code vfio_unregister_group_dev} does it, with the REQ interrupt first
 * ({@code vfio_pci_core_request}), but a bounded wait where the kernel waits on.
 */
class IrqTest {
    private static final long MIB = 1 << 20;
    private final Machine machine = VfioTestMachine.boot();
    private final DeviceCore core = machine.devices();
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("user");
    private final VfioUser user = vfio.open(mm, 64 * MIB);
    private final Arena arena = Arena.ofShared();
    private final PciFunction engine;
    private final IommuGroup iommuGroup;
    private final long pinsBefore = machine.memory().pinsOutstanding();
    private final VfioContainer container;
    private final VfioGroup group;
    private final VfioDevice dev;

    IrqTest() {
        core.registerDriver(vfio.driver());
        engine = (PciFunction) core.findDevice(ENGINE).orElseThrow();
        core.setDriverOverride(engine, "vfio-pci");
        core.reprobe(engine);
        iommuGroup = machine.iommu().groupOf(engine).orElseThrow();
        container = VfioContainer.open(user);
        group = VfioGroup.open(user, iommuGroup.id());
        group.setContainer(container);
        container.setIommu(VFIO_TYPE1v2_IOMMU);
        dev = VfioDevice.open(group, ENGINE);
    }

    @AfterEach
    void close() {
        user.close();
        arena.close();
        assertEquals(pinsBefore, machine.memory().pinsOutstanding(), "no page pinned after close");
        assertEquals(0, vfio.pinnedPages());
        assertTrue(machine.iommu().domains().stream().noneMatch(d -> d.type() == IommuDomainType.UNMANAGED));
        mm.close();
        machine.close();
    }

    private MemorySegment irqInfo(int index) {
        MemorySegment s = arena.allocate(IRQ_INFO);
        setU32(s, IRQ_INFO, "argsz", (int) IRQ_INFO.byteSize());
        setU32(s, IRQ_INFO, "index", index);
        return s;
    }

    private MemorySegment irqSet(int flags, int index, int start, int count, int... fds) {
        MemorySegment s = arena.allocate(20 + 4L * Math.max(fds.length, 1));
        s.set(U32, 0, (int) s.byteSize());
        s.set(U32, 4, flags);
        s.set(U32, 8, index);
        s.set(U32, 12, start);
        s.set(U32, 16, count);
        for (int i = 0; i < fds.length; i++) {
            s.set(U32, 20 + 4L * i, fds[i]);
        }
        return s;
    }

    private long setIrqs(MemorySegment s) {
        return user.ioctl(dev.fd(), VFIO_DEVICE_SET_IRQS, s);
    }

    private static final int EVENTFD_TRIGGER = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    private static final int NONE_TRIGGER = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;

    @Test
    void irqInfoOfEveryIndex() {
        MemorySegment s = irqInfo(VFIO_PCI_MSIX_IRQ_INDEX);
        user.ioctl(dev.fd(), VFIO_DEVICE_GET_IRQ_INFO, s);
        assertEquals(VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, u32(s, IRQ_INFO, "flags"));
        assertEquals(4, u32(s, IRQ_INFO, "count"));
        s = irqInfo(VFIO_PCI_MSI_IRQ_INDEX);
        user.ioctl(dev.fd(), VFIO_DEVICE_GET_IRQ_INFO, s);
        assertEquals(0, u32(s, IRQ_INFO, "count"), "no MSI capability");
        s = irqInfo(VFIO_PCI_INTX_IRQ_INDEX);
        user.ioctl(dev.fd(), VFIO_DEVICE_GET_IRQ_INFO, s);
        assertEquals(VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, u32(s, IRQ_INFO, "flags"));
        assertEquals(engine.configSpace().read(PciRegs.INTERRUPT_PIN, 1) != 0 ? 1 : 0, u32(s, IRQ_INFO, "count"));
        for (int i : new int[]{VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX}) {
            MemorySegment e = irqInfo(i);
            user.ioctl(dev.fd(), VFIO_DEVICE_GET_IRQ_INFO, e);
            assertEquals(1, u32(e, IRQ_INFO, "count"), "index " + i);
        }
        fails(Errno.EINVAL, () -> user.ioctl(dev.fd(), VFIO_DEVICE_GET_IRQ_INFO, irqInfo(5)), "index 5");
    }

    @Test
    void setIrqsRefusals() {
        int efd = user.openEventfd();
        fails(Errno.EINVAL, () -> setIrqs(irqSet(EVENTFD_TRIGGER, 5, 0, 1, efd)), "index 5");
        fails(Errno.EINVAL, () -> setIrqs(irqSet(EVENTFD_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 3, 2, efd, efd)),
                "start + count past 4");
        fails(Errno.EINVAL, () -> setIrqs(irqSet(EVENTFD_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 4, 0)), "start 4");
        fails(Errno.EINVAL, () -> setIrqs(irqSet(EVENTFD_TRIGGER | VFIO_IRQ_SET_DATA_BOOL,
                VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, efd)), "two data types");
        fails(Errno.EINVAL, () -> setIrqs(irqSet(EVENTFD_TRIGGER | 0x40, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, efd)),
                "unknown flag");
        fails(Errno.EINVAL, () -> setIrqs(irqSet(EVENTFD_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, efd)),
                "argsz holds one fd for two vectors");
        fails(Errno.ENOTTY, () -> setIrqs(irqSet(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
                VFIO_PCI_MSIX_IRQ_INDEX, 0, 1)), "MSI-X has no mask action");
        fails(Errno.ENOTTY, () -> setIrqs(irqSet(NONE_TRIGGER | VFIO_IRQ_SET_ACTION_MASK,
                VFIO_PCI_REQ_IRQ_INDEX, 0, 1)), "two actions");
        fails(Errno.EBADF, () -> setIrqs(irqSet(EVENTFD_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, 77)));
        fails(Errno.EINVAL, () -> setIrqs(irqSet(EVENTFD_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, container.fd())),
                "a container is no eventfd");
        MemorySegment shortArg = irqSet(NONE_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1);
        shortArg.set(U32, 0, 19);
        fails(Errno.EINVAL, () -> setIrqs(shortArg), "argsz 19");
        assertFalse(engine.msix().orElseThrow().enabled(), "no refusal enabled anything");
    }

    /** The copy engine's completion interrupt reaches the user's eventfd through MSI-X. */
    @Test
    void msixVectorsSignalTheUsersEventfds() throws InterruptedException {
        int efd = user.openEventfd();
        IrqTrigger t = user.eventfd(efd);
        assertEquals(0, setIrqs(irqSet(EVENTFD_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, efd)));
        assertTrue(engine.msix().orElseThrow().enabled());
        assertEquals(0, setIrqs(irqSet(NONE_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1)), "loopback");
        assertEquals(1, t.await(5, TimeUnit.SECONDS));
        MemorySegment eight = arena.allocate(8);
        fails(Errno.EAGAIN, () -> user.pread(efd, eight, 0), "read reset the count");

        long ring = mm.mmapAnonymous(4096, Prot.PROT_READ | Prot.PROT_WRITE);
        long buf = mm.mmapAnonymous(8192, Prot.PROT_READ | Prot.PROT_WRITE);
        container.mapDma(ring, 0x1000_0000L, 4096, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
        container.mapDma(buf, 0x2000_0000L, 8192, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
        dev.write(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2,
                dev.read(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2) | PciRegs.COMMAND_MASTER);
        dev.write(0, REG_CTRL, 8, CTRL_RESET);
        dev.write(0, REG_RING_BASE, 8, 0x1000_0000L);
        dev.write(0, REG_RING_SIZE, 8, 8);
        dev.write(0, REG_CTRL, 8, CTRL_ENABLE);
        MemorySegment desc = arena.allocate(DESC_SIZE);
        desc.set(ValueLayout.JAVA_LONG_UNALIGNED, DESC_SRC, 0x2000_0000L);
        desc.set(ValueLayout.JAVA_LONG_UNALIGNED, DESC_DST, 0x2000_1000L);
        desc.set(ValueLayout.JAVA_INT_UNALIGNED, DESC_LEN, 4096);
        desc.set(ValueLayout.JAVA_INT_UNALIGNED, DESC_FLAGS, FLAG_INTERRUPT);
        mm.write(ring, desc);
        dev.write(0, REG_RING_TAIL, 8, 1);
        assertEquals(1, t.await(5, TimeUnit.SECONDS), "the completion interrupt");

        fails(Errno.EINVAL, () -> setIrqs(irqSet(EVENTFD_TRIGGER, VFIO_PCI_INTX_IRQ_INDEX, 0,
                Math.min(1, engine.configSpace().read(PciRegs.INTERRUPT_PIN, 1)), efd)), "a second IRQ type");
        assertEquals(0, setIrqs(irqSet(NONE_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0)), "count 0 disables");
        assertFalse(engine.msix().orElseThrow().enabled());
        assertEquals(0, setIrqs(irqSet(EVENTFD_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, efd, -1)), "again");
    }

    /**
     * Surprise removal under an active user: the REQ eventfd fires first, the user closes its device file in
     * answer, and the unplug returns within a second; then the group is gone and the BAR mapping faults.
     */
    @Test
    void unplugSignalsReqAndTheUserLetsGo() throws InterruptedException {
        vfio.setRequestTimeout(Duration.ofSeconds(10)); // so the unplug can only end by the user's close
        int req = user.openEventfd();
        setIrqs(irqSet(EVENTFD_TRIGGER, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, req));
        long regs = dev.mmap(0, 0, 0x8000, Prot.PROT_READ | Prot.PROT_WRITE);
        long buf = mm.mmapAnonymous(8192, Prot.PROT_READ | Prot.PROT_WRITE);
        container.mapDma(buf, 0x2000_0000L, 8192, VFIO_DMA_MAP_FLAG_READ);
        AtomicLong seen = new AtomicLong();
        Thread driver = new Thread(() -> {
            try {
                seen.set(user.eventfd(req).await(5, TimeUnit.SECONDS));
                dev.close();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "user-driver");
        driver.start();
        long t0 = System.nanoTime();
        machine.hotUnplug(engine);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        driver.join(5000);
        assertFalse(driver.isAlive(), "the user's thread ended");
        assertEquals(1, seen.get(), "REQ signalled first");
        assertTrue(ms < 1000, "unplug took " + ms + " ms, not ended by the user's close");
        assertFalse(user.isOpen(dev.fd()));
        fails(Errno.ENODEV, group::status, "the group lost its last device");
        fails(Errno.EFAULT, () -> mm.read(regs, arena.allocate(8)), "the BAR mapping was zapped");
        assertEquals(0, vfio.pinnedPages(), "the group left the container, which let its mappings go");
        assertEquals(0, user.lockedBytes());
    }

    /** A user that ignores REQ: the removal waits the bounded time, then revokes the file. */
    @Test
    void unplugRevokesAUserThatIgnoresReq() {
        vfio.setRequestTimeout(Duration.ofMillis(200));
        int req = user.openEventfd();
        setIrqs(irqSet(EVENTFD_TRIGGER, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, req));
        int efd = user.openEventfd();
        setIrqs(irqSet(EVENTFD_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, efd));
        long t0 = System.nanoTime();
        machine.hotUnplug(engine);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms >= 200 && ms < 1000, "unplug took " + ms + " ms");
        assertEquals(1, user.eventfd(req).count(), "REQ was signalled");
        fails(Errno.ENODEV, dev::info);
        fails(Errno.ENODEV, () -> dev.read(0, REG_ID, 8));
        fails(Errno.ENODEV, () -> setIrqs(irqSet(NONE_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0)));
        assertEquals(IommuDomainType.DMA, iommuGroup.domain().type(), "the group is no user's any more");
    }
}
