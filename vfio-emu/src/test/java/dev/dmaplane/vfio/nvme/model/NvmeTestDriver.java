package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.nvme.NvmeAdmin;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import dev.dmaplane.vfio.nvme.NvmeRegs;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A kernel-style NVMe driver for the tests, in the order of {@code drivers/nvme/host/pci.c}: {@code nvme_pci_enable}
 * (memory space, bus mastering, MSI-X), {@code nvme_pci_configure_admin_queue} (disable, AQA/ASQ/ACQ, enable, wait
 * for CSTS.RDY within CAP.TO), then one I/O queue pair ({@code nvme_create_io_queues}). Commands are submitted one
 * at a time and waited for with a bounded wait: on the vector's trigger, or by polling the phase tag.
 */
final class NvmeTestDriver implements Driver {
    static final String NAME = "nvme-test";
    static final long TIMEOUT_MS = 10_000;
    static final int ADMIN_ENTRIES = 32;
    static final int IO_ENTRIES = 64;
    static final int IO_QID = 1;
    /** I/O queue pairs the driver asks for with Set Features Number of Queues. */
    static final int GRANTED = 4;
    /** The I/O CQ's vector; the admin CQ uses vector 0. */
    static final int IO_VECTOR = 1;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final boolean msix;
    private final boolean ioQueues;
    Bound bound;

    /**
     * @param msix     allocate MSI-X vectors and have the I/O CQ signal (else the I/O CQ is polled, IEN 0)
     * @param ioQueues create the I/O queue pair at probe
     */
    NvmeTestDriver(boolean msix, boolean ioQueues) {
        this.msix = msix;
        this.ioQueues = ioQueues;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public MatchTable matchTable() {
        return MatchTable.of(MatchEntry.Pci.ofClass(0x010802, 0xffffff));
    }

    @Override
    public BoundDevice probe(Device device, MatchEntry match) {
        bound = new Bound((PciFunction) device);
        return bound;
    }

    /** One queue pair as the driver sees it: the SQ tail it writes, the CQ head and phase it expects. */
    final class Queue {
        final int qid;
        final CoherentBuffer sq;
        final CoherentBuffer cq;
        final int entries;
        final int cqEntries;
        final IrqTrigger irq;
        int tail;
        int head;
        boolean phase = true;
        int cids;

        Queue(int qid, CoherentBuffer sq, CoherentBuffer cq, int entries, int cqEntries, IrqTrigger irq) {
            this.qid = qid;
            this.sq = sq;
            this.cq = cq;
            this.entries = entries;
            this.cqEntries = cqEntries;
            this.irq = irq;
        }
    }

    /** A data buffer: physically contiguous pages mapped bidirectionally. */
    record Buffer(long phys, long bus, MemorySegment cpu, long pfn) {
    }

    final class Bound implements BoundDevice {
        final PciFunction fn;
        final Bar.Mmio regs;
        final long cap;
        final int dstrd;
        final Queue admin;
        Queue io;
        IrqVectors vectors;
        final CoherentBuffer lists;
        private final List<Buffer> buffers = new ArrayList<>();

        Bound(PciFunction fn) {
            this.fn = fn;
            fn.setMemorySpace(true);
            fn.devres().add("pci_disable_device", () -> fn.setMemorySpace(false));
            fn.setMaster(true);
            fn.devres().add("pci_clear_master", () -> fn.setMaster(false));
            fn.dma().setDmaMask(-1L);
            regs = fn.bar(0).orElseThrow().mmio();
            cap = regs.read(NvmeRegs.CAP, 8);
            dstrd = NvmeRegs.capDstrd(cap);
            IrqTrigger adminIrq = null;
            IrqTrigger ioIrq = null;
            if (msix) {
                vectors = IrqVectors.alloc(fn, 2, 2, IrqVectors.PCI_IRQ_MSIX);
                adminIrq = new IrqTrigger();
                ioIrq = new IrqTrigger();
                vectors.requestTrigger(0, adminIrq, "nvme0q0");
                vectors.requestTrigger(IO_VECTOR, ioIrq, "nvme0q1");
            }
            lists = coherent(3 * HostMemory.PAGE_SIZE);
            admin = new Queue(0, coherent((long) ADMIN_ENTRIES * NvmeCommand.SIZE),
                    coherent((long) ADMIN_ENTRIES * NvmeCompletion.SIZE), ADMIN_ENTRIES, ADMIN_ENTRIES, adminIrq);
            disable();
            regs.write(NvmeRegs.AQA, 4, NvmeRegs.aqa(ADMIN_ENTRIES, ADMIN_ENTRIES));
            regs.write(NvmeRegs.ASQ, 8, admin.sq.dmaAddress());
            regs.write(NvmeRegs.ACQ, 8, admin.cq.dmaAddress());
            regs.write(NvmeRegs.CC, 4, NvmeRegs.ccEnable(0));
            waitCsts(NvmeRegs.CSTS_RDY, NvmeRegs.CSTS_RDY);
            fn.devres().add("nvme_disable_ctrl", this::disable);
            if (ioQueues) {
                createIoQueues(ioIrq);
            }
        }

        private CoherentBuffer coherent(long size) {
            CoherentBuffer b = fn.dma().allocCoherent(size);
            fn.devres().add("dma_free_coherent", () -> fn.dma().freeCoherent(b));
            return b;
        }

        void createIoQueues(IrqTrigger ioIrq) {
            NvmeCompletion nq = admin(NvmeCommand.of(NvmeCommand.ADMIN_SET_FEATURES, 0, 0, 0, 0,
                    NvmeAdmin.FEAT_NUM_QUEUES, (GRANTED - 1) << 16 | (GRANTED - 1), 0));
            require(nq.ok(), "Set Features Number of Queues: " + nq);
            io = new Queue(IO_QID, coherent((long) IO_ENTRIES * NvmeCommand.SIZE),
                    coherent((long) IO_ENTRIES * NvmeCompletion.SIZE), IO_ENTRIES, IO_ENTRIES, ioIrq);
            NvmeCompletion cq = admin(NvmeCommand.createCq(0, IO_QID, IO_ENTRIES, io.cq.dmaAddress(), IO_VECTOR, msix));
            require(cq.ok(), "Create I/O CQ: " + cq);
            NvmeCompletion sq = admin(NvmeCommand.createSq(0, IO_QID, IO_ENTRIES, io.sq.dmaAddress(), IO_QID));
            require(sq.ok(), "Create I/O SQ: " + sq);
        }

        /** Another polled I/O queue pair {@code qid}: an SQ of {@code sqEntries} on a CQ of {@code cqEntries}. */
        Queue queuePair(int qid, int sqEntries, int cqEntries) {
            Queue q = new Queue(qid, coherent((long) sqEntries * NvmeCommand.SIZE),
                    coherent((long) cqEntries * NvmeCompletion.SIZE), sqEntries, cqEntries, null);
            NvmeCompletion cq = admin(NvmeCommand.createCq(0, qid, cqEntries, q.cq.dmaAddress(), 0, false));
            require(cq.ok(), "Create I/O CQ " + qid + ": " + cq);
            NvmeCompletion sq = admin(NvmeCommand.createSq(0, qid, sqEntries, q.sq.dmaAddress(), qid));
            require(sq.ok(), "Create I/O SQ " + qid + ": " + sq);
            return q;
        }

        /** CC.EN cleared and CSTS.RDY seen clear ({@code nvme_disable_ctrl}); nothing to do for a controller gone. */
        void disable() {
            if (regs.read(NvmeRegs.CSTS, 4) == 0xFFFF_FFFFL) {
                return;
            }
            if ((regs.read(NvmeRegs.CC, 4) & NvmeRegs.CC_EN) != 0) {
                regs.write(NvmeRegs.CC, 4, 0);
            }
            waitCsts(NvmeRegs.CSTS_RDY, 0);
        }

        /**
         * Disables and enables the controller again with the same admin queues ({@code nvme_reset_work}): the I/O
         * queues are gone, as the controller reset deleted them.
         */
        void reset() {
            disable();
            io = null;
            admin.tail = 0;
            admin.head = 0;
            admin.phase = true;
            admin.cq.cpu().fill((byte) 0);
            regs.write(NvmeRegs.CC, 4, NvmeRegs.ccEnable(0));
            waitCsts(NvmeRegs.CSTS_RDY, NvmeRegs.CSTS_RDY);
        }

        /** Waits (bounded) for CSTS; all ones is a controller that is gone ({@code nvme_wait_ready}'s {@code ~0}). */
        void waitCsts(int mask, int value) {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TIMEOUT_MS);
            long csts;
            while (((csts = regs.read(NvmeRegs.CSTS, 4)) & mask) != value) {
                if (csts == 0xFFFF_FFFFL) {
                    throw new ErrnoException(Errno.ENODEV, fn.bdf() + ": CSTS reads all ones: the controller is gone");
                }
                if (System.nanoTime() > deadline) {
                    throw new ErrnoException(Errno.ETIMEDOUT, fn.bdf() + ": CSTS " + regs.read(NvmeRegs.CSTS, 4)
                            + " never showed " + value + " under mask " + mask);
                }
                Thread.yield();
            }
        }

        /** Places {@code c} in {@code q} with a fresh identifier (unless it has one) and rings the tail doorbell. */
        NvmeCommand submit(Queue q, NvmeCommand c) {
            NvmeCommand cmd = place(q, c);
            ring(q);
            return cmd;
        }

        /** Places {@code c} in {@code q} as {@link #submit} does, without ringing the doorbell. */
        NvmeCommand place(Queue q, NvmeCommand c) {
            NvmeCommand cmd = c.cid() != 0 ? c : c.withCid(++q.cids & 0xffff | 0x100);
            cmd.writeTo(q.sq.cpu().asSlice((long) q.tail * NvmeCommand.SIZE));
            q.tail = (q.tail + 1) % q.entries;
            return cmd;
        }

        /** Rings {@code q}'s tail doorbell with the tail the placed commands reached. */
        void ring(Queue q) {
            VarHandle.fullFence();
            regs.write(NvmeRegs.sqTailDoorbell(q.qid, dstrd), 4, q.tail);
        }

        /** Waits (bounded) for the next completion of {@code q}, consumes it and rings the head doorbell. */
        NvmeCompletion reap(Queue q) {
            MemorySegment slot = q.cq.cpu().asSlice((long) q.head * NvmeCompletion.SIZE, NvmeCompletion.SIZE);
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TIMEOUT_MS);
            while (true) {
                VarHandle.acquireFence();
                if (NvmeCompletion.phaseOf(slot) == q.phase) {
                    break;
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new ErrnoException(Errno.ETIMEDOUT, fn.bdf() + ": no completion on CQ" + q.qid + " within "
                            + TIMEOUT_MS + " ms; CSTS " + regs.read(NvmeRegs.CSTS, 4));
                }
                Thread.yield();
            }
            NvmeCompletion done = NvmeCompletion.readFrom(slot);
            q.head = (q.head + 1) % q.cqEntries;
            if (q.head == 0) {
                q.phase = !q.phase;
            }
            regs.write(NvmeRegs.cqHeadDoorbell(q.qid, dstrd), 4, q.head);
            return done;
        }

        /** Whether {@code q} has a completion posted and not yet reaped. */
        boolean posted(Queue q) {
            VarHandle.acquireFence();
            return NvmeCompletion.phaseOf(q.cq.cpu().asSlice((long) q.head * NvmeCompletion.SIZE)) == q.phase;
        }

        NvmeCompletion admin(NvmeCommand c) {
            NvmeCommand sent = submit(admin, c);
            NvmeCompletion done = reap(admin);
            require(done.cid() == sent.cid(), "completion " + done + " for command " + sent);
            return done;
        }

        NvmeCompletion io(NvmeCommand c) {
            NvmeCommand sent = submit(io, c);
            NvmeCompletion done = reap(io);
            require(done.cid() == sent.cid(), "completion " + done + " for command " + sent);
            return done;
        }

        /** {@code size} bytes of contiguous host pages, zeroed and mapped for the device. */
        Buffer buffer(long size) {
            int order = 64 - Long.numberOfLeadingZeros((size - 1) >> HostMemory.PAGE_SHIFT);
            long pfn = memory.allocPages(order);
            long phys = pfn << HostMemory.PAGE_SHIFT;
            MemorySegment cpu = memory.slice(phys, size);
            cpu.fill((byte) 0);
            long bus = fn.dma().mapSingle(phys, size, DmaDirection.BIDIRECTIONAL);
            Buffer b = new Buffer(phys, bus, cpu, pfn);
            buffers.add(b);
            return b;
        }

        /**
         * PRP1 and PRP2 for {@code length} bytes at bus address {@code bus}, with any PRP list written into
         * {@link #lists} from byte {@code at} on, chaining to the next list page from a page's last entry.
         */
        long[] prps(long bus, long length, int at) {
            long first = Math.min(length, HostMemory.PAGE_SIZE - (bus & (HostMemory.PAGE_SIZE - 1)));
            long rest = length - first;
            long next = bus + first;
            int pages = (int) ((rest + HostMemory.PAGE_SIZE - 1) / HostMemory.PAGE_SIZE);
            if (pages == 0) {
                return new long[]{bus, 0};
            }
            if (pages == 1) {
                return new long[]{bus, next};
            }
            int pos = at;
            for (int i = 0; i < pages; i++) {
                if (pos % HostMemory.PAGE_SIZE == HostMemory.PAGE_SIZE - 8 && pages - i > 1) {
                    lists.cpu().set(U64, pos, lists.dmaAddress() + pos + 8);
                    pos += 8;
                }
                lists.cpu().set(U64, pos, next + (long) i * HostMemory.PAGE_SIZE);
                pos += 8;
            }
            return new long[]{bus, lists.dmaAddress() + at};
        }

        @Override
        public void remove() {
            for (Buffer b : buffers) {
                fn.dma().unmapSingle(b.bus(), b.cpu().byteSize(), DmaDirection.BIDIRECTIONAL);
                memory.putPage(b.pfn());
            }
            buffers.clear();
        }
    }

    private HostMemory memory;

    /** The machine's memory, for data buffers. */
    NvmeTestDriver memory(HostMemory m) {
        this.memory = m;
        return this;
    }

    private static void require(boolean ok, String what) {
        if (!ok) {
            throw new ErrnoException(Errno.EIO, what);
        }
    }
}
