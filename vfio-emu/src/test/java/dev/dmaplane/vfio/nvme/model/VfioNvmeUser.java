package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.PciRegs;
import dev.dmaplane.vfio.VfioContainer;
import dev.dmaplane.vfio.VfioDevice;
import dev.dmaplane.vfio.VfioGroup;
import dev.dmaplane.vfio.VfioLayouts;
import dev.dmaplane.vfio.VfioUser;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import dev.dmaplane.vfio.nvme.NvmeRegs;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

import static dev.dmaplane.vfio.VfioUapi.*;

/**
 * An SPDK-style user-space NVMe driver over VFIO for the tests ({@code lib/nvme/nvme_pcie.c} with
 * {@code env_dpdk}'s VFIO memory registration): the controller's BAR0 mapped into the process, one anonymous region
 * mapped for DMA at IOVA = VA (queues and data), polled queue pairs, the REQ eventfd armed; every call through
 * {@link VfioUser} is timed ({@link #longestCall}). Registers and doorbells are loads and stores through the BAR
 * mapping, queue entries loads and stores through the process's memory, as a real driver issues them.
 */
final class VfioNvmeUser implements AutoCloseable {
    static final long PAGE = 4096;
    static final int ADMIN_ENTRIES = 8;
    /** Pages: admin SQ, admin CQ, then an SQ and a CQ per I/O queue, then one data page per command. */
    static final long MEMORY = 64 * PAGE;
    private static final long WAIT_NANOS = TimeUnit.SECONDS.toNanos(1);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final VfioUser user;
    private final AddressSpace mm;
    private final String bdf;
    private final AtomicLong longest;
    final VfioContainer container;
    final VfioGroup group;
    final VfioDevice device;
    final int req;
    final long regs;
    final long memory;
    private int dstrd;
    private int adminTail;
    private int adminHead;
    private boolean adminPhase = true;
    private int cid;

    /**
     * Opens the group and the device, maps BAR0 and the DMA memory, arms REQ and enables the controller with its
     * admin queues.
     *
     * @param longest the longest call seen so far, in nanoseconds, updated by every call
     */
    VfioNvmeUser(VfioUser user, int groupId, String bdf, AtomicLong longest) {
        this.user = user;
        this.mm = user.mm();
        this.bdf = bdf;
        this.longest = longest;
        container = timed(() -> VfioContainer.open(user));
        group = timed(() -> VfioGroup.open(user, groupId));
        timed(() -> {
            group.setContainer(container);
            container.setIommu(VFIO_TYPE1v2_IOMMU);
            return null;
        });
        device = timed(() -> VfioDevice.open(group, bdf));
        req = user.openEventfd();
        timed(() -> setReq(req));
        regs = timed(() -> device.mmap(0, 0, 0x2000, Prot.PROT_READ | Prot.PROT_WRITE));
        memory = mm.mmapAnonymous(MEMORY, Prot.PROT_READ | Prot.PROT_WRITE);
        timed(() -> {
            container.mapDma(memory, memory, MEMORY, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
            return null;
        });
        int cmd = (int) device.read(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2);
        device.write(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2,
                cmd | PciRegs.COMMAND_MEMORY | PciRegs.COMMAND_MASTER);
        enable();
    }

    /** {@code VFIO_DEVICE_SET_IRQS} of REQ with eventfd {@code fd}. */
    private long setReq(int fd) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(VfioLayouts.IRQ_SET.byteSize() + 4, 4);
            s.set(U32, 0, (int) s.byteSize());
            s.set(U32, 4, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER);
            s.set(U32, 8, VFIO_PCI_REQ_IRQ_INDEX);
            s.set(U32, 12, 0);
            s.set(U32, 16, 1);
            s.set(U32, 20, fd);
            return user.ioctl(device.fd(), VFIO_DEVICE_SET_IRQS, s);
        }
    }

    /** Runs {@code call} and keeps the longest duration. */
    <T> T timed(Supplier<T> call) {
        long t0 = System.nanoTime();
        try {
            return call.get();
        } finally {
            longest.accumulateAndGet(System.nanoTime() - t0, Math::max);
        }
    }

    long reg(long offset, int size) {
        return timed(() -> {
            MemorySegment s = MemorySegment.ofArray(new byte[8]);
            mm.read(regs + offset, s.asSlice(0, size));
            return size == 8 ? s.get(U64, 0) : Integer.toUnsignedLong(s.get(U32, 0));
        });
    }

    void setReg(long offset, int size, long value) {
        timed(() -> {
            MemorySegment s = MemorySegment.ofArray(new byte[8]);
            s.set(U64, 0, value);
            mm.write(regs + offset, s.asSlice(0, size));
            return null;
        });
    }

    /** {@code nvme_ctrlr_disable}, AQA/ASQ/ACQ, {@code nvme_ctrlr_enable}, each wait bounded. */
    private void enable() {
        long cap = reg(NvmeRegs.CAP, 8);
        dstrd = NvmeRegs.capDstrd(cap);
        setReg(NvmeRegs.CC, 4, 0);
        waitCsts(0);
        setReg(NvmeRegs.AQA, 4, NvmeRegs.aqa(ADMIN_ENTRIES, ADMIN_ENTRIES));
        setReg(NvmeRegs.ASQ, 8, iova(memory));
        setReg(NvmeRegs.ACQ, 8, iova(memory + PAGE));
        setReg(NvmeRegs.CC, 4, NvmeRegs.ccEnable(0));
        waitCsts(NvmeRegs.CSTS_RDY);
    }

    private void waitCsts(int rdy) {
        long deadline = System.nanoTime() + WAIT_NANOS;
        long csts;
        while (((csts = reg(NvmeRegs.CSTS, 4)) & NvmeRegs.CSTS_RDY) != rdy) {
            if (csts == 0xFFFF_FFFFL || System.nanoTime() > deadline) {
                throw new ErrnoException(Errno.ETIMEDOUT, bdf + ": CSTS " + Long.toHexString(csts) + ", not RDY " + rdy);
            }
            Thread.yield();
        }
    }

    /** Where SQ {@code qid} is in the process ({@link #iova} for the device's view). */
    long sq(int qid) {
        return memory + (2L + 2L * (qid - 1)) * PAGE;
    }

    long cq(int qid) {
        return memory + (3L + 2L * (qid - 1)) * PAGE;
    }

    /** The data page of command {@code n}, in the process. */
    long data(int n) {
        return memory + (16L + n) * PAGE;
    }

    /** The IOVA of process address {@code va} inside the DMA memory: the address itself, as SPDK maps it. */
    long iova(long va) {
        return va;
    }

    private void putCommand(long at, NvmeCommand c) {
        MemorySegment s = MemorySegment.ofArray(new byte[NvmeCommand.SIZE]);
        c.writeTo(s);
        mm.write(at, s);
    }

    private NvmeCompletion completion(long at) {
        MemorySegment s = MemorySegment.ofArray(new byte[NvmeCompletion.SIZE]);
        mm.read(at, s);
        return NvmeCompletion.readFrom(s);
    }

    /** An admin command, waited for (bounded). */
    NvmeCompletion admin(NvmeCommand c) {
        putCommand(memory + (long) adminTail * NvmeCommand.SIZE, c.withCid(++cid & 0xffff));
        adminTail = (adminTail + 1) % ADMIN_ENTRIES;
        setReg(NvmeRegs.sqTailDoorbell(0, dstrd), 4, adminTail);
        NvmeCompletion done = awaitCompletion(memory + PAGE + (long) adminHead * NvmeCompletion.SIZE, adminPhase);
        adminHead = (adminHead + 1) % ADMIN_ENTRIES;
        if (adminHead == 0) {
            adminPhase = !adminPhase;
        }
        setReg(NvmeRegs.cqHeadDoorbell(0, dstrd), 4, adminHead);
        return done;
    }

    /** Waits (bounded) for the entry at {@code at} to carry {@code phase}. */
    NvmeCompletion awaitCompletion(long at, boolean phase) {
        long deadline = System.nanoTime() + WAIT_NANOS;
        while (true) {
            NvmeCompletion c = timed(() -> completion(at));
            if (c.phase() == phase) {
                return c;
            }
            if (System.nanoTime() > deadline) {
                throw new ErrnoException(Errno.ETIMEDOUT, bdf + ": no completion at " + Long.toHexString(at)
                        + "; CSTS " + Long.toHexString(reg(NvmeRegs.CSTS, 4)));
            }
            Thread.yield();
        }
    }

    /** A polled I/O queue pair: an SQ of {@code sqEntries} on a CQ of {@code cqEntries}. */
    void createQueuePair(int qid, int sqEntries, int cqEntries) {
        NvmeCompletion cqDone = admin(NvmeCommand.createCq(0, qid, cqEntries, iova(cq(qid)), 0, false));
        NvmeCompletion sqDone = admin(NvmeCommand.createSq(0, qid, sqEntries, iova(sq(qid)), qid));
        if (!cqDone.ok() || !sqDone.ok()) {
            throw new ErrnoException(Errno.EIO, bdf + ": queue pair " + qid + ": " + cqDone + ", " + sqDone);
        }
    }

    /** Places {@code commands} in SQ {@code qid} from slot 0 and rings its tail doorbell once. */
    void submit(int qid, NvmeCommand... commands) {
        for (int i = 0; i < commands.length; i++) {
            putCommand(sq(qid) + (long) i * NvmeCommand.SIZE, commands[i].withCid(++cid & 0xffff));
        }
        setReg(NvmeRegs.sqTailDoorbell(qid, dstrd), 4, commands.length);
    }

    /** Waits (bounded) for the time the REQ eventfd fires. */
    long awaitRequest(Duration timeout) throws InterruptedException {
        return user.eventfd(req).await(timeout.toNanos(), TimeUnit.NANOSECONDS);
    }

    /** What an SPDK process does at detach or exit: every descriptor closed, every mapping gone. */
    @Override
    public void close() {
        timed(() -> {
            user.close(device.fd());
            user.close(group.fd());
            user.close(container.fd());
            user.close(req);
            mm.munmap(regs, 0x2000);
            mm.munmap(memory, MEMORY);
            return null;
        });
    }
}
