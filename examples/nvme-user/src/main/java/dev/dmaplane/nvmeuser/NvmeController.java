package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
import dev.dmaplane.vfio.RegionInfo;
import dev.dmaplane.vfio.Vfio;
import dev.dmaplane.vfio.VfioDevice;
import dev.dmaplane.vfio.VfioLayouts;
import dev.dmaplane.vfio.VfioUapi;
import dev.dmaplane.vfio.VfioUser;
import dev.dmaplane.vfio.nvme.NvmeAdmin;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeRegs;
import dev.dmaplane.vfio.nvme.NvmeStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A user-space NVMe driver bound to one controller through VFIO, as SPDK's PCIe transport drives it
 * ({@code lib/nvme/nvme_pcie.c}, {@code nvme_ctrlr.c}'s {@code nvme_ctrlr_process_init}): BAR0 mapped into the
 * process, Bus Master on, CC.EN cleared and CSTS.RDY awaited, the admin queue pair in pinned memory (AQA, ASQ, ACQ),
 * CC.EN set, Identify Controller and Namespace, Set Features Number of Queues; then I/O queue pairs on request,
 * polled or with an MSI-X vector each (VFIO eventfds). {@link #close} deletes the queues, shuts the controller
 * down with CC.SHN and closes everything: nothing stays pinned or mapped.
 * <p>
 * Threading: bring-up, admin commands and {@link #close} on one thread; each {@link QueuePair} on its owner's.
 */
public final class NvmeController implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(NvmeController.class);
    /** The namespace the driver uses. */
    public static final int NSID = 1;
    /** Entries of the admin queues. */
    static final int ADMIN_ENTRIES = 32;
    /** How long an admin command may take. */
    static final long ADMIN_TIMEOUT_MS = 5_000;
    /** The memory page size the driver sets in CC.MPS: 4 KiB. */
    static final int MPS = 0;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** What {@link #attach(Machine, String, Options)} opened, closed by {@link #close} in reverse. */
    private record Owned(Machine machine, PciFunction fn, AddressSpace mm, VfioUser user, boolean bound) {
    }

    /**
     * How to attach.
     *
     * @param memlockLimit {@code RLIMIT_MEMLOCK} of the driver's process, bytes
     * @param irqVectors   MSI-X vectors to enable with an eventfd each (0: every queue pair polled); vector {@code q}
     *                     serves I/O queue pair {@code q}, vector 0 the admin queue
     * @param iommufd      open the device through iommufd ({@link IommufdFrontEnd}) instead of the container/group
     *                     front end ({@link ContainerFrontEnd})
     */
    public record Options(long memlockLimit, int irqVectors, boolean iommufd) {
        public static final Options DEFAULT = new Options(1L << 30, 0, false);

        public Options {
            if (memlockLimit < 0 || irqVectors < 0) {
                throw new ErrnoException(Errno.EINVAL, "NvmeController.Options: memlock " + memlockLimit
                        + ", irq vectors " + irqVectors + ": neither may be negative");
            }
        }

        /** The container/group front end. */
        public Options(long memlockLimit, int irqVectors) {
            this(memlockLimit, irqVectors, false);
        }

        /** The same with {@code n} MSI-X vectors. */
        public Options withIrqVectors(int n) {
            return new Options(memlockLimit, n, iommufd);
        }

        /** The same through iommufd ({@code true}) or the container/group front end. */
        public Options withIommufd(boolean on) {
            return new Options(memlockLimit, irqVectors, on);
        }
    }

    private final DmaFrontEnd frontEnd;
    private final Owned owned;
    private final AddressSpace mm;
    private final VfioDevice device;
    private final long bar;
    private final long barLength;
    private final long cap;
    private final int dstrd;
    private final List<IrqTrigger> vectors = new ArrayList<>();
    private final List<QueuePair> ioQueues = new ArrayList<>();
    private QueuePair admin;
    private DmaRegion scratch;
    private NvmeIdentity identity;
    private boolean closed;

    private NvmeController(DmaFrontEnd frontEnd, Owned owned) {
        this.frontEnd = frontEnd;
        this.owned = owned;
        this.mm = frontEnd.user().mm();
        this.device = frontEnd.device();
        this.barLength = registerWindow(device);
        this.bar = device.mmap(0, 0, barLength, Prot.PROT_READ | Prot.PROT_WRITE);
        this.cap = read64(NvmeRegs.CAP);
        this.dstrd = NvmeRegs.capDstrd(cap);
    }

    /** The part of BAR0 that may be mapped from its start: registers and doorbells, up to the MSI-X table. */
    private static long registerWindow(VfioDevice device) {
        RegionInfo bar0 = device.regionInfo(VfioUapi.VFIO_PCI_BAR0_REGION_INDEX);
        if (bar0.size() == 0 || (bar0.flags() & VfioUapi.VFIO_REGION_INFO_FLAG_MMAP) == 0) {
            throw new ErrnoException(Errno.ENODEV, "NVMe BAR0 of " + bar0.size() + " bytes cannot be mapped");
        }
        return bar0.sparseMmap().stream().filter(a -> a.offset() == 0).mapToLong(RegionInfo.SparseArea::size)
                .findFirst().orElse(bar0.size());
    }

    /**
     * Binds {@code bdf} to vfio-pci by {@code driver_override} (unbinding a kernel driver first, as
     * {@code driverctl set-override} does), opens it through the container/group front end (or iommufd's, as the
     * options say) in a process of its own
     * and brings the controller up. Everything is undone when it fails.
     *
     * @throws ErrnoException {@code ENODEV} for no such function or one vfio-pci does not take; {@code EINVAL}
     *                        for a function without an IOMMU group; {@code EIO} when the controller does not come up
     */
    public static NvmeController attach(Machine machine, String bdf, Options options) {
        ErrnoException.requireNonNull(machine, "NvmeController.attach: machine");
        ErrnoException.requireNonNull(bdf, "NvmeController.attach: bdf");
        ErrnoException.requireNonNull(options, "NvmeController.attach: options");
        PciFunction fn = machine.devices().findDevice(bdf).filter(PciFunction.class::isInstance)
                .map(PciFunction.class::cast)
                .orElseThrow(() -> new ErrnoException(Errno.ENODEV, "nvme: no PCI function " + bdf));
        boolean bound = DriverOverride.bindVfio(machine, fn);
        AddressSpace mm = null;
        VfioUser user = null;
        try {
            IommuGroup group = machine.iommu().groupOf(fn).orElseThrow(() -> new ErrnoException(Errno.EINVAL,
                    "nvme: " + bdf + " has no IOMMU group"));
            mm = machine.newAddressSpace("nvme-user " + bdf);
            user = Vfio.of(machine).open(mm, options.memlockLimit());
            DmaFrontEnd fe = options.iommufd() ? IommufdFrontEnd.open(user, fn.name())
                    : ContainerFrontEnd.open(user, group.id(), fn.name());
            return bringUp(fe, new Owned(machine, fn, mm, user, bound), options.irqVectors());
        } catch (RuntimeException e) {
            if (user != null) {
                user.close();
            }
            if (mm != null) {
                mm.close();
            }
            if (bound) {
                DriverOverride.unbindVfio(machine, fn);
            }
            throw e;
        }
    }

    /**
     * Brings up the controller behind {@code frontEnd}, whose files the caller keeps owning (it closes them after
     * {@link #close}), with {@code irqVectors} MSI-X vectors.
     */
    public static NvmeController attach(DmaFrontEnd frontEnd, int irqVectors) {
        ErrnoException.requireNonNull(frontEnd, "NvmeController.attach: front end");
        return bringUp(frontEnd, null, irqVectors);
    }

    private static NvmeController bringUp(DmaFrontEnd fe, Owned owned, int irqVectors) {
        NvmeController c;
        try {
            c = new NvmeController(fe, owned);
        } catch (RuntimeException e) {
            if (owned != null) {
                fe.close();
            }
            throw e;
        }
        try {
            c.init(irqVectors);
            return c;
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
    }

    private void init(int irqVectors) {
        enableBusMaster();
        if (irqVectors > 0) {
            enableMsix(irqVectors);
        }
        if ((read32(NvmeRegs.CC) & NvmeRegs.CC_EN) != 0 || (read32(NvmeRegs.CSTS) & NvmeRegs.CSTS_RDY) != 0) {
            write32(NvmeRegs.CC, 0);
            awaitReady(false);
        }
        admin = new QueuePair(this, 0, ADMIN_ENTRIES, false, null);
        scratch = DmaRegion.allocate(frontEnd, DmaRegion.PAGE);
        write32(NvmeRegs.AQA, NvmeRegs.aqa(ADMIN_ENTRIES, ADMIN_ENTRIES));
        write64(NvmeRegs.ASQ, admin.sqIova());
        write64(NvmeRegs.ACQ, admin.cqIova());
        write32(NvmeRegs.CC, NvmeRegs.ccEnable(MPS));
        awaitReady(true);
        identity = identify();
        LOG.info("nvme {}: {} {} {}, {} blocks of {} bytes, {} I/O queue pairs", frontEnd.bdf(), identity.model(),
                identity.serial(), identity.firmware(), identity.blocks(), identity.blockSize(), identity.ioQueues());
    }

    private void enableBusMaster() {
        int cmd = (int) device.read(VfioUapi.VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2);
        device.write(VfioUapi.VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2,
                cmd | PciRegs.COMMAND_MEMORY | PciRegs.COMMAND_MASTER);
    }

    /** {@code VFIO_DEVICE_SET_IRQS} for MSI-X vectors 0..n-1, an eventfd each ({@code vfio_pci_enable_msi}). */
    private void enableMsix(int n) {
        VfioUser user = frontEnd.user();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(VfioLayouts.IRQ_SET.byteSize() + 4L * n, 8);
            VfioLayouts.setU32(s, VfioLayouts.IRQ_SET, "argsz", (int) s.byteSize());
            VfioLayouts.setU32(s, VfioLayouts.IRQ_SET, "flags",
                    VfioUapi.VFIO_IRQ_SET_DATA_EVENTFD | VfioUapi.VFIO_IRQ_SET_ACTION_TRIGGER);
            VfioLayouts.setU32(s, VfioLayouts.IRQ_SET, "index", VfioUapi.VFIO_PCI_MSIX_IRQ_INDEX);
            VfioLayouts.setU32(s, VfioLayouts.IRQ_SET, "start", 0);
            VfioLayouts.setU32(s, VfioLayouts.IRQ_SET, "count", n);
            for (int i = 0; i < n; i++) {
                int fd = user.openEventfd();
                s.set(U32, VfioLayouts.IRQ_SET.byteSize() + 4L * i, fd);
                vectors.add(user.eventfd(fd));
            }
            user.ioctl(device.fd(), VfioUapi.VFIO_DEVICE_SET_IRQS, s);
        }
    }

    private void disableMsix() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(VfioLayouts.IRQ_SET);
            VfioLayouts.setU32(s, VfioLayouts.IRQ_SET, "argsz", (int) s.byteSize());
            VfioLayouts.setU32(s, VfioLayouts.IRQ_SET, "flags",
                    VfioUapi.VFIO_IRQ_SET_DATA_NONE | VfioUapi.VFIO_IRQ_SET_ACTION_TRIGGER);
            VfioLayouts.setU32(s, VfioLayouts.IRQ_SET, "index", VfioUapi.VFIO_PCI_MSIX_IRQ_INDEX);
            frontEnd.user().ioctl(device.fd(), VfioUapi.VFIO_DEVICE_SET_IRQS, s);
        }
    }

    /** Waits up to CAP.TO for CSTS.RDY to read {@code ready}; EIO on CSTS.CFS or the timeout. */
    private void awaitReady(boolean ready) {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(500L * Math.max(1, NvmeRegs.capTimeout(cap)));
        while (true) {
            int csts = read32(NvmeRegs.CSTS);
            if ((csts & NvmeRegs.CSTS_CFS) != 0 && ready) {
                throw new ErrnoException(Errno.EIO, "nvme " + frontEnd.bdf() + ": CSTS.CFS set while enabling (CSTS "
                        + Integer.toHexString(csts) + ")");
            }
            if (((csts & NvmeRegs.CSTS_RDY) != 0) == ready) {
                return;
            }
            if (System.nanoTime() > deadline) {
                throw new ErrnoException(Errno.EIO, "nvme " + frontEnd.bdf() + ": CSTS.RDY not " + (ready ? 1 : 0)
                        + " within CAP.TO");
            }
            Thread.onSpinWait();
        }
    }

    private NvmeIdentity identify() {
        MemorySegment id = MemorySegment.ofArray(new byte[NvmeAdmin.IDENTIFY_SIZE]);
        adminCommand(NvmeCommand.of(NvmeCommand.ADMIN_IDENTIFY, 0, 0, scratch.iova(0), 0,
                NvmeAdmin.CNS_CONTROLLER, 0, 0), "Identify Controller");
        scratch.read(0, id);
        int vid = Short.toUnsignedInt(id.get(ValueLayout.JAVA_SHORT_UNALIGNED, NvmeAdmin.IDC_VID));
        String sn = ascii(id, NvmeAdmin.IDC_SN, 20);
        String mn = ascii(id, NvmeAdmin.IDC_MN, 40);
        String fr = ascii(id, NvmeAdmin.IDC_FR, 8);
        int mdts = Byte.toUnsignedInt(id.get(ValueLayout.JAVA_BYTE, NvmeAdmin.IDC_MDTS));
        long maxTransfer = mdts == 0 ? 1L << 20 : (4096L << NvmeRegs.capMpsMin(cap)) << mdts;
        adminCommand(NvmeCommand.of(NvmeCommand.ADMIN_IDENTIFY, 0, NSID, scratch.iova(0), 0,
                NvmeAdmin.CNS_NAMESPACE, 0, 0), "Identify Namespace");
        scratch.read(0, id);
        long nsze = id.get(U64, NvmeAdmin.IDN_NSZE);
        int flbas = id.get(ValueLayout.JAVA_BYTE, NvmeAdmin.IDN_FLBAS) & 0xf;
        int lbads = Byte.toUnsignedInt(id.get(ValueLayout.JAVA_BYTE, NvmeAdmin.IDN_LBAF0 + 4L * flbas + 2));
        int want = 0xffff - 1; // as many as offered: the controller grants what it has (nvme_ctrlr_set_num_queues)
        int dw0 = adminCommand(NvmeCommand.of(NvmeCommand.ADMIN_SET_FEATURES, 0, 0, 0, 0, NvmeAdmin.FEAT_NUM_QUEUES,
                want | want << 16, 0), "Set Features Number of Queues");
        int granted = Math.min((dw0 & 0xffff) + 1, (dw0 >>> 16) + 1);
        return new NvmeIdentity(frontEnd.bdf(), vid, sn, mn, fr, nsze, 1 << lbads, maxTransfer,
                NvmeRegs.capMqes(cap) + 1, granted);
    }

    private static String ascii(MemorySegment s, long at, int n) {
        byte[] b = new byte[n];
        MemorySegment.copy(s, ValueLayout.JAVA_BYTE, at, b, 0, n);
        return new String(b, StandardCharsets.US_ASCII).replace('\0', ' ').trim();
    }

    /**
     * Runs one admin command and waits for it (bounded): its completion's DW0.
     *
     * @throws ErrnoException {@code EIO} naming the command and its status when it fails or does not complete
     */
    int adminCommand(NvmeCommand command, String what) {
        checkOpen();
        int[] result = new int[3]; // done, status, dw0
        int cid = admin.submit(command);
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ADMIN_TIMEOUT_MS);
        while (result[0] == 0) {
            admin.poll((c, status, dw0) -> {
                if (c == cid) {
                    result[0] = 1;
                    result[1] = status;
                    result[2] = dw0;
                }
            }, ADMIN_ENTRIES);
            if (result[0] == 0 && System.nanoTime() > deadline) {
                throw new ErrnoException(Errno.EIO, "nvme " + frontEnd.bdf() + ": " + what + " did not complete within "
                        + ADMIN_TIMEOUT_MS + " ms (CSTS " + Integer.toHexString(read32(NvmeRegs.CSTS)) + ")");
            }
            Thread.onSpinWait();
        }
        if (result[1] != NvmeStatus.SUCCESS) {
            throw new ErrnoException(Errno.EIO, "nvme " + frontEnd.bdf() + ": " + what + " failed: "
                    + NvmeStatus.name(result[1]));
        }
        return result[2];
    }

    /** What Identify and Set Features said. */
    public NvmeIdentity identity() {
        return identity;
    }

    /** The front end the controller is driven through. */
    public DmaFrontEnd frontEnd() {
        return frontEnd;
    }

    /**
     * A new I/O queue pair of {@code entries} entries (Create I/O CQ, then SQ, both physically contiguous in pinned
     * memory), polled, or completing on MSI-X vector {@code qid} when {@code interrupts}; with PRP list pages when
     * {@code maxTransfer} needs more than two pages.
     *
     * @throws ErrnoException {@code EINVAL} for entries outside 2..CAP.MQES+1, a transfer over MDTS, interrupts
     *                        without a vector for the queue; {@code ENOSPC} when every granted queue is in use;
     *                        {@code EIO} when the controller refuses a create
     */
    public QueuePair createIoQueuePair(int entries, long maxTransfer, boolean interrupts) {
        checkOpen();
        if (entries < 2 || entries > identity.maxEntries()) {
            throw new ErrnoException(Errno.EINVAL, "nvme: queue of " + entries + " entries outside 2.."
                    + identity.maxEntries() + " (CAP.MQES)");
        }
        if (maxTransfer < 1 || maxTransfer > identity.maxTransfer()) {
            throw new ErrnoException(Errno.EINVAL, "nvme: transfers of " + maxTransfer + " bytes outside 1.."
                    + identity.maxTransfer() + " (MDTS)");
        }
        int qid = 1;
        while (qid <= identity.ioQueues() && used(qid)) {
            qid++;
        }
        if (qid > identity.ioQueues()) {
            throw new ErrnoException(Errno.ENOSPC, "nvme: all " + identity.ioQueues() + " granted I/O queue pairs in use");
        }
        if (interrupts && qid >= vectors.size()) {
            throw new ErrnoException(Errno.EINVAL, "nvme: I/O queue " + qid + " has no MSI-X vector: " + vectors.size()
                    + " enabled");
        }
        QueuePair qp = new QueuePair(this, qid, entries, maxTransfer > 2 * DmaRegion.PAGE,
                interrupts ? vectors.get(qid) : null);
        try {
            adminCommand(NvmeCommand.createCq(0, qid, entries, qp.cqIova(), interrupts ? qid : 0, interrupts),
                    "Create I/O CQ " + qid);
            try {
                adminCommand(NvmeCommand.createSq(0, qid, entries, qp.sqIova(), qid), "Create I/O SQ " + qid);
            } catch (RuntimeException e) {
                deleteQueue(NvmeCommand.ADMIN_DELETE_CQ, qid);
                throw e;
            }
        } catch (RuntimeException e) {
            qp.close();
            throw e;
        }
        ioQueues.add(qp);
        return qp;
    }

    private boolean used(int qid) {
        return ioQueues.stream().anyMatch(q -> q.qid() == qid);
    }

    /** A queue pair closing: its SQ and CQ are deleted on the controller (I/O queues only). */
    void released(QueuePair qp) {
        if (qp.qid() == 0 || !ioQueues.remove(qp) || closed) {
            return;
        }
        deleteQueue(NvmeCommand.ADMIN_DELETE_SQ, qp.qid());
        deleteQueue(NvmeCommand.ADMIN_DELETE_CQ, qp.qid());
    }

    private void deleteQueue(int opcode, int qid) {
        adminCommand(NvmeCommand.of(opcode, 0, 0, 0, 0, qid, 0, 0),
                (opcode == NvmeCommand.ADMIN_DELETE_SQ ? "Delete I/O SQ " : "Delete I/O CQ ") + qid);
    }

    /**
     * Runs one Read or Write on {@code qp} and waits for it (bounded): for tests and tools that move data, not for
     * the fast path. {@code bytes} must be whole blocks.
     *
     * @throws ErrnoException {@code EINVAL} for a size that is not whole blocks; {@code EIO} with the status when it fails
     */
    public void io(QueuePair qp, int opcode, long slba, DmaRegion buffer, long offset, long bytes) {
        io(qp, opcode, slba, buffer.iova(offset), bytes);
    }

    /** As {@link #io(QueuePair, int, long, DmaRegion, long, long)}, to or from IOVA {@code iova}. */
    public void io(QueuePair qp, int opcode, long slba, long iova, long bytes) {
        if (bytes < 1 || bytes % identity.blockSize() != 0) {
            throw new ErrnoException(Errno.EINVAL, "nvme: " + bytes + " bytes is not a whole number of "
                    + identity.blockSize() + "-byte blocks");
        }
        int cid = qp.submitIo(opcode, NSID, slba, (int) (bytes / identity.blockSize()), iova, bytes);
        int[] result = {0, 0};
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ADMIN_TIMEOUT_MS);
        while (result[0] == 0) {
            qp.poll((c, status, dw0) -> {
                if (c == cid) {
                    result[0] = 1;
                    result[1] = status;
                }
            }, qp.capacity());
            if (result[0] == 0 && System.nanoTime() > deadline) {
                throw new ErrnoException(Errno.EIO, "nvme " + frontEnd.bdf() + ": command " + cid + " on queue "
                        + qp.qid() + " did not complete within " + ADMIN_TIMEOUT_MS + " ms");
            }
            Thread.onSpinWait();
        }
        if (result[1] != NvmeStatus.SUCCESS) {
            throw new ErrnoException(Errno.EIO, "nvme " + frontEnd.bdf() + ": " + (opcode == NvmeCommand.NVM_READ
                    ? "Read" : "Write") + " of LBA " + slba + " failed: " + NvmeStatus.name(result[1]));
        }
    }

    long sqDoorbell(int qid) {
        return NvmeRegs.sqTailDoorbell(qid, dstrd);
    }

    long cqDoorbell(int qid) {
        return NvmeRegs.cqHeadDoorbell(qid, dstrd);
    }

    /** A 32-bit store to a doorbell of the mapped BAR. */
    void doorbell(long offset, int value) {
        MemorySegment v = MemorySegment.ofArray(new byte[4]);
        v.set(U32, 0, value);
        mm.write(bar + offset, v);
    }

    int read32(long offset) {
        MemorySegment v = MemorySegment.ofArray(new byte[4]);
        mm.read(bar + offset, v);
        return v.get(U32, 0);
    }

    long read64(long offset) {
        MemorySegment v = MemorySegment.ofArray(new byte[8]);
        mm.read(bar + offset, v);
        return v.get(U64, 0);
    }

    private void write32(long offset, int value) {
        doorbell(offset, value);
    }

    void write64(long offset, long value) {
        MemorySegment v = MemorySegment.ofArray(new byte[8]);
        v.set(U64, 0, value);
        mm.write(bar + offset, v);
    }

    private void checkOpen() {
        if (closed) {
            throw new ErrnoException(Errno.EBADF, "nvme " + frontEnd.bdf() + ": the driver is closed");
        }
    }

    /**
     * Deletes the I/O queues, shuts the controller down (CC.SHN normal, CSTS.SHST complete awaited within CAP.TO:
     * {@code nvme_ctrlr_shutdown_async}), disables MSI-X, unmaps every buffer and, for a controller this driver
     * attached by BDF, closes its files and process and gives the function back to no driver. A failure along the
     * way is logged and the rest still runs; the first is thrown at the end.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        List<RuntimeException> failures = new ArrayList<>();
        for (QueuePair qp : List.copyOf(ioQueues)) {
            step(failures, "closing I/O queue pair " + qp.qid(), qp::close);
        }
        closed = true;
        if (frontEnd.isOpen()) {
            step(failures, "shutdown", this::shutdown);
            if (!vectors.isEmpty()) {
                step(failures, "disabling MSI-X", this::disableMsix);
            }
        }
        if (admin != null) {
            step(failures, "unmapping the admin queues", admin::close);
        }
        if (scratch != null) {
            step(failures, "unmapping the admin buffer", scratch::close);
        }
        step(failures, "unmapping BAR0", () -> {
            if (!mm.isClosed()) {
                mm.munmap(bar, barLength);
            }
        });
        if (owned != null) {
            step(failures, "closing the front end", frontEnd::close);
            step(failures, "closing the process", () -> {
                owned.user().close();
                owned.mm().close();
            });
            if (owned.bound()) {
                step(failures, "unbinding vfio-pci", () -> DriverOverride.unbindVfio(owned.machine(), owned.fn()));
            }
        }
        if (!failures.isEmpty()) {
            RuntimeException first = failures.getFirst();
            failures.stream().skip(1).forEach(first::addSuppressed);
            throw first;
        }
    }

    private void shutdown() {
        int cc = read32(NvmeRegs.CC);
        if ((cc & NvmeRegs.CC_EN) == 0) {
            return;
        }
        write32(NvmeRegs.CC, cc & ~(3 << NvmeRegs.CC_SHN_SHIFT) | NvmeRegs.CC_SHN_NORMAL << NvmeRegs.CC_SHN_SHIFT);
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(500L * Math.max(1, NvmeRegs.capTimeout(cap)));
        while ((read32(NvmeRegs.CSTS) & NvmeRegs.CSTS_SHST_MASK)
                != NvmeRegs.CSTS_SHST_COMPLETE << NvmeRegs.CSTS_SHST_SHIFT) {
            if (System.nanoTime() > deadline) {
                throw new ErrnoException(Errno.EIO, "nvme " + frontEnd.bdf() + ": shutdown not complete within CAP.TO");
            }
            Thread.onSpinWait();
        }
        write32(NvmeRegs.CC, 0);
    }

    private static void step(List<RuntimeException> failures, String what, Runnable r) {
        try {
            r.run();
        } catch (RuntimeException e) {
            LOG.error("nvme close: {} failed", what, e);
            failures.add(e);
        }
    }
}
