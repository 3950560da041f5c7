package dev.dmaplane.nvmeuser;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.p2pdma.P2pMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.nvme.NvmeAdmin;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import dev.dmaplane.vfio.nvme.NvmeRegs;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * The kernel's nvme-pci driver ({@code drivers/nvme/host/pci.c}), the parts the p2pmem path needs: at probe
 * {@code nvme_pci_enable} (memory space, bus mastering), {@code nvme_pci_configure_admin_queue} (disable, AQA/ASQ/ACQ,
 * enable, CSTS.RDY within CAP.TO), Identify Controller and Namespace, one polled I/O queue pair, and
 * {@code nvme_map_cmb}: the controller memory buffer added to the function's p2pmem and published when CMBSZ says
 * it takes both read and write data (WDS and RDS). Everything is undone by devres at unbind: the controller
 * disabled first (as {@code nvme_remove} does before devres runs), then the p2pmem taken back
 * ({@link P2pDma#releaseResources}), then the queues freed. Commands go one at a time, each awaited with a bounded
 * poll of the phase tag.
 */
final class NvmePciDriver implements Driver {
    static final String NAME = "nvme";
    private static final Logger LOG = LoggerFactory.getLogger(NvmePciDriver.class);
    private static final long TIMEOUT_MS = 10_000;
    private static final int ENTRIES = 32;
    private static final int IO_QID = 1;
    private static final int NSID = 1;
    private static final long PAGE = 4096;
    /** {@code memremap_compat_align()} on x86-64: the subsection size p2pmem's page map needs. */
    static final long P2PMEM_ALIGN = 2L << 20;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final P2pDma p2p;
    private volatile Controller controller;

    NvmePciDriver(Machine machine) {
        this.p2p = P2pDma.of(machine);
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
        Controller c = new Controller((PciFunction) device);
        controller = c;
        return c;
    }

    /**
     * The controller this driver bound, while bound.
     *
     * @throws ErrnoException {@code ENODEV} when it is bound to none
     */
    Controller controller() {
        Controller c = controller;
        if (c == null) {
            throw new ErrnoException(Errno.ENODEV, "nvme: no controller bound to the nvme driver");
        }
        return c;
    }

    /** One queue as the driver sees it: the SQ tail it writes, the CQ head and phase it expects. */
    private static final class Queue {
        final int qid;
        final CoherentBuffer sq;
        final CoherentBuffer cq;
        int tail;
        int head;
        boolean phase = true;
        int cids;

        Queue(int qid, CoherentBuffer sq, CoherentBuffer cq) {
            this.qid = qid;
            this.sq = sq;
            this.cq = cq;
        }
    }

    /** A bound controller ({@code struct nvme_dev}). */
    final class Controller implements BoundDevice {
        final PciFunction fn;
        private final Bar.Mmio regs;
        private final long cap;
        private final int dstrd;
        private final Queue admin;
        private final Queue io;
        /** One page for Identify data, then PRP list pages. */
        private final CoherentBuffer scratch;
        private final int blockSize;
        private final long maxTransfer;
        private final P2pMemory cmb;
        private int cmbsz;

        Controller(PciFunction fn) {
            this.fn = fn;
            fn.setMemorySpace(true);
            fn.devres().add("pci_disable_device", () -> fn.setMemorySpace(false));
            fn.setMaster(true);
            fn.devres().add("pci_clear_master", () -> fn.setMaster(false));
            fn.dma().setDmaMask(-1L);
            // nvme_pci_alloc_dev: dma_set_max_seg_size(0xffffffff); the model's largest is 2 GiB - 1
            fn.dma().setMaxSegmentSize(Integer.MAX_VALUE);
            regs = fn.bar(0).orElseThrow(() -> new ErrnoException(Errno.ENODEV, fn.bdf() + ": no BAR0")).mmio();
            cap = regs.read(NvmeRegs.CAP, 8);
            dstrd = NvmeRegs.capDstrd(cap);
            scratch = coherent(PAGE * 3);
            admin = new Queue(0, coherent((long) ENTRIES * NvmeCommand.SIZE), coherent((long) ENTRIES * NvmeCompletion.SIZE));
            disable();
            regs.write(NvmeRegs.AQA, 4, NvmeRegs.aqa(ENTRIES, ENTRIES));
            regs.write(NvmeRegs.ASQ, 8, admin.sq.dmaAddress());
            regs.write(NvmeRegs.ACQ, 8, admin.cq.dmaAddress());
            regs.write(NvmeRegs.CC, 4, NvmeRegs.ccEnable(0));
            waitReady(NvmeRegs.CSTS_RDY);
            fn.devres().add("nvme_disable_ctrl", this::disable);

            MemorySegment id = scratch.cpu().asSlice(0, NvmeAdmin.IDENTIFY_SIZE);
            admin(NvmeCommand.of(NvmeCommand.ADMIN_IDENTIFY, 0, 0, scratch.dmaAddress(), 0, NvmeAdmin.CNS_CONTROLLER, 0, 0),
                    "Identify Controller");
            int mdts = Byte.toUnsignedInt(id.get(ValueLayout.JAVA_BYTE, NvmeAdmin.IDC_MDTS));
            // the PRP list page holds 512 entries: cap a command there, as nvme_pci_alloc_dev caps max_hw_sectors
            long mdtsBytes = mdts == 0 ? Long.MAX_VALUE : (PAGE << NvmeRegs.capMpsMin(cap)) << mdts;
            maxTransfer = Math.min(mdtsBytes, PAGE * (PAGE / 8));
            admin(NvmeCommand.of(NvmeCommand.ADMIN_IDENTIFY, 0, NSID, scratch.dmaAddress(), 0, NvmeAdmin.CNS_NAMESPACE, 0, 0),
                    "Identify Namespace");
            int flbas = id.get(ValueLayout.JAVA_BYTE, NvmeAdmin.IDN_FLBAS) & 0xf;
            blockSize = 1 << Byte.toUnsignedInt(id.get(ValueLayout.JAVA_BYTE, NvmeAdmin.IDN_LBAF0 + 4L * flbas + 2));
            admin(NvmeCommand.of(NvmeCommand.ADMIN_SET_FEATURES, 0, 0, 0, 0, NvmeAdmin.FEAT_NUM_QUEUES, 0, 0),
                    "Set Features Number of Queues");
            io = new Queue(IO_QID, coherent((long) ENTRIES * NvmeCommand.SIZE), coherent((long) ENTRIES * NvmeCompletion.SIZE));
            admin(NvmeCommand.createCq(0, IO_QID, ENTRIES, io.cq.dmaAddress(), 0, false), "Create I/O CQ");
            admin(NvmeCommand.createSq(0, IO_QID, ENTRIES, io.sq.dmaAddress(), IO_QID), "Create I/O SQ");
            cmb = mapCmb();
            // nvme_remove's nvme_dev_disable runs before devres takes the p2pmem back
            fn.devres().add("nvme_dev_disable", this::disable);
        }

        private CoherentBuffer coherent(long size) {
            CoherentBuffer b = fn.dma().allocCoherent(size);
            fn.devres().add("dma_free_coherent", () -> fn.dma().freeCoherent(b));
            return b;
        }

        /**
         * {@code nvme_map_cmb}: CMBMSC.CRE so that CMBSZ and CMBLOC report the buffer; none (CMBSZ 0), an offset past
         * the BAR, or a size or BAR address off {@code memremap_compat_align()} leaves it unused. Else CMBMSC gets
         * CRE|CMSE with the buffer's bus address, the range goes to p2pmem ({@code pci_p2pdma_add_resource}; on
         * failure CMBMSC is cleared again) and is published when CMBSZ has both WDS and RDS.
         */
        private P2pMemory mapCmb() {
            if (!NvmeRegs.capCmbs(cap)) {
                return null;
            }
            regs.write(NvmeRegs.CMBMSC, 8, NvmeRegs.CMBMSC_CRE);
            cmbsz = (int) regs.read(NvmeRegs.CMBSZ, 4);
            if (cmbsz == 0) {
                return null;
            }
            int cmbloc = (int) regs.read(NvmeRegs.CMBLOC, 4);
            long unit = 4096L << 4 * (cmbsz >>> NvmeRegs.CMBSZ_SZU_SHIFT & 0xf);
            long offset = unit * Integer.toUnsignedLong(cmbloc >>> 12);
            int index = cmbloc & NvmeRegs.CMBLOC_BIR_MASK;
            Bar bar = fn.bar(index).orElse(null);
            if (bar == null || offset > bar.size()) {
                return null;
            }
            long size = Math.min(NvmeRegs.cmbBytes(cmbsz), bar.size() - offset);
            if (size % P2PMEM_ALIGN != 0 || bar.address() % P2PMEM_ALIGN != 0) {
                LOG.warn("{}: CMB of {} bytes at {} is not {}-aligned; not used", fn.bdf(), size,
                        Long.toHexString(bar.address()), P2PMEM_ALIGN);
                return null;
            }
            regs.write(NvmeRegs.CMBMSC, 8, NvmeRegs.CMBMSC_CRE | NvmeRegs.CMBMSC_CMSE | bar.address() + offset);
            P2pMemory mem;
            try {
                mem = p2p.addResource(fn, index, size, offset);
            } catch (ErrnoException e) {
                LOG.warn("{}: failed to register the CMB: {}", fn.bdf(), e.getMessage());
                regs.write(NvmeRegs.CMBMSC, 8, 0);
                return null;
            }
            fn.devres().add("pci_p2pdma_release", () -> p2p.releaseResources(fn));
            if ((cmbsz & (NvmeRegs.CMBSZ_WDS | NvmeRegs.CMBSZ_RDS)) == (NvmeRegs.CMBSZ_WDS | NvmeRegs.CMBSZ_RDS)) {
                mem.publish(true);
            }
            return mem;
        }

        /** The CMB's p2pmem, when {@code nvme_map_cmb} added one. */
        Optional<P2pMemory> cmb() {
            return Optional.ofNullable(cmb);
        }

        /** CMBSZ as {@code nvme_map_cmb} read it (0: no buffer). */
        int cmbsz() {
            return cmbsz;
        }

        int blockSize() {
            return blockSize;
        }

        /** The most bytes one command moves. */
        long maxTransfer() {
            return maxTransfer;
        }

        /**
         * One Read or Write of {@code bytes} between LBA {@code slba} and the device addresses from
         * {@code dmaAddress} on, contiguous for this controller; PRP1, PRP2 or a PRP list in the driver's own pages.
         *
         * @throws ErrnoException {@code EINVAL} for a length that is not whole blocks up to {@link #maxTransfer} or an
         *                        address off a 4-byte boundary, {@code EIO} naming the status of a failed command
         */
        synchronized void io(int opcode, long slba, long dmaAddress, long bytes) {
            if (bytes <= 0 || bytes % blockSize != 0 || bytes > maxTransfer || (dmaAddress & 3) != 0) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: I/O of %d bytes at %#x: whole %d-byte blocks up"
                        + " to %d, dword-aligned", fn.bdf(), bytes, dmaAddress, blockSize, maxTransfer));
            }
            long first = Math.min(bytes, PAGE - (dmaAddress & (PAGE - 1)));
            long rest = bytes - first;
            long prp2 = 0;
            if (rest > PAGE) {
                MemorySegment list = scratch.cpu().asSlice(PAGE, PAGE);
                long next = dmaAddress + first;
                for (int i = 0; i * PAGE < rest; i++) {
                    list.set(U64, i * 8L, next + i * PAGE);
                }
                prp2 = scratch.dmaAddress() + PAGE;
            } else if (rest > 0) {
                prp2 = dmaAddress + first;
            }
            NvmeCompletion done = submit(io, NvmeCommand.readWrite(opcode, 0, NSID, slba, (int) (bytes / blockSize),
                    dmaAddress, prp2));
            if (!done.ok()) {
                throw new ErrnoException(Errno.EIO, String.format("%s: %s of LBA %d+%d: status %#x", fn.bdf(),
                        opcode == NvmeCommand.NVM_WRITE ? "Write" : "Read", slba, bytes / blockSize, done.status()));
            }
        }

        private void admin(NvmeCommand c, String what) {
            NvmeCompletion done = submit(admin, c);
            if (!done.ok()) {
                throw new ErrnoException(Errno.EIO, fn.bdf() + ": " + what + ": status " + Integer.toHexString(done.status()));
            }
        }

        private NvmeCompletion submit(Queue q, NvmeCommand c) {
            NvmeCommand cmd = c.withCid(++q.cids & 0xfff);
            cmd.writeTo(q.sq.cpu().asSlice((long) q.tail * NvmeCommand.SIZE));
            q.tail = (q.tail + 1) % ENTRIES;
            VarHandle.fullFence();
            regs.write(NvmeRegs.sqTailDoorbell(q.qid, dstrd), 4, q.tail);
            MemorySegment slot = q.cq.cpu().asSlice((long) q.head * NvmeCompletion.SIZE, NvmeCompletion.SIZE);
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TIMEOUT_MS);
            while (true) {
                VarHandle.acquireFence();
                if (NvmeCompletion.phaseOf(slot) == q.phase) {
                    break;
                }
                if (System.nanoTime() > deadline) {
                    throw new ErrnoException(Errno.ETIMEDOUT, fn.bdf() + ": no completion on CQ" + q.qid + " within "
                            + TIMEOUT_MS + " ms; CSTS " + regs.read(NvmeRegs.CSTS, 4));
                }
                Thread.onSpinWait();
            }
            NvmeCompletion done = NvmeCompletion.readFrom(slot);
            q.head = (q.head + 1) % ENTRIES;
            if (q.head == 0) {
                q.phase = !q.phase;
            }
            regs.write(NvmeRegs.cqHeadDoorbell(q.qid, dstrd), 4, q.head);
            if (done.cid() != cmd.cid()) {
                throw new ErrnoException(Errno.EIO, fn.bdf() + ": completion " + done + " for command " + cmd);
            }
            return done;
        }

        /** {@code nvme_disable_ctrl}: CC.EN cleared and CSTS.RDY seen clear; nothing to do for a controller gone. */
        private void disable() {
            if (regs.read(NvmeRegs.CSTS, 4) == 0xFFFF_FFFFL) {
                return;
            }
            if ((regs.read(NvmeRegs.CC, 4) & NvmeRegs.CC_EN) != 0) {
                regs.write(NvmeRegs.CC, 4, 0);
            }
            waitReady(0);
        }

        /** {@code nvme_wait_ready}: CSTS.RDY equal to {@code rdy} within the bound; all ones is a controller gone. */
        private void waitReady(int rdy) {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TIMEOUT_MS);
            long csts;
            while (((csts = regs.read(NvmeRegs.CSTS, 4)) & NvmeRegs.CSTS_RDY) != rdy) {
                if (csts == 0xFFFF_FFFFL) {
                    throw new ErrnoException(Errno.ENODEV, fn.bdf() + ": CSTS reads all ones: the controller is gone");
                }
                if (System.nanoTime() > deadline) {
                    throw new ErrnoException(Errno.ETIMEDOUT, fn.bdf() + ": CSTS.RDY never became " + rdy);
                }
                Thread.onSpinWait();
            }
        }

        @Override
        public void remove() {
            controller = null;
        }
    }
}
