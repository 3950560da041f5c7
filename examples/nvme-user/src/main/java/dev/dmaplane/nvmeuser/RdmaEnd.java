package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;

import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * One RC end as an application opens it with libibverbs ({@code ibv_open_device}, {@code ibv_alloc_pd},
 * {@code ibv_create_cq}, {@code ibv_create_qp}, {@code ibv_modify_qp(3)} to RTS): a process, a context, a PD, a CQ
 * and a QP.
 */
final class RdmaEnd implements AutoCloseable {
    /** Access of every region: the far end writes and reads it. */
    static final int ACCESS = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
    private static final int DEPTH = 16;
    private final RdmaDevice device;
    private final AddressSpace mm;
    private final boolean ownsMm;
    private final VerbsContext ctx;
    private final ProtectionDomain pd;
    private final CompletionQueue cq;
    private final QueuePair qp;

    RdmaEnd(Machine machine, RdmaCore core, String name) {
        this(core, name, machine.newAddressSpace("nvme cmb " + name), true);
    }

    /**
     * An end opened in the existing process {@code mm} (say the one driving the NVMe through VFIO), so that its
     * descriptors are numbers of the same table; closing the end leaves {@code mm} open.
     */
    RdmaEnd(RdmaCore core, String name, AddressSpace mm) {
        this(core, name, mm, false);
    }

    private RdmaEnd(RdmaCore core, String name, AddressSpace mm, boolean ownsMm) {
        this.mm = mm;
        this.ownsMm = ownsMm;
        try {
            device = core.device(name).orElseThrow(() -> new ErrnoException(Errno.ENODEV, "nvme cmb: no RDMA device "
                    + name + " (is the Soft-RoCE driver bound?)"));
            ctx = device.open(mm);
        } catch (RuntimeException e) {
            closeMm();
            throw e;
        }
        try {
            pd = ctx.allocPd();
            cq = ctx.createCq(2 * DEPTH, null, 0);
            qp = pd.createQp(new QpInitAttr(cq, cq, null, new QpCap(DEPTH, DEPTH, 1, 1, 0), QpType.RC, false));
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    RdmaDevice device() {
        return device;
    }

    /** The process this end runs in. */
    AddressSpace mm() {
        return mm;
    }

    ProtectionDomain pd() {
        return pd;
    }

    /** Anonymous read-write memory of this end's process. */
    long buffer(long length) {
        return mm.mmapAnonymous(length, Prot.PROT_READ | Prot.PROT_WRITE);
    }

    /** Brings both QPs to RTS, each aimed at the other (the out-of-band exchange, done in-process). */
    static void connect(RdmaEnd a, RdmaEnd b) {
        a.connectTo(b);
        b.connectTo(a);
    }

    private void connectTo(RdmaEnd peer) {
        qp.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).accessFlags(ACCESS).build());
        qp.modify(QpAttr.builder().state(QpState.RTR).av(AhAttr.roce(peer.ctx.queryGid(1, 1), 1, 1))
                .pathMtu(ctx.queryPort(1).activeMtu()).destQpn(peer.qp.qpNum()).rqPsn(0).maxDestRdAtomic(1)
                .minRnrTimer(1).build());
        qp.modify(QpAttr.builder().state(QpState.RTS).sqPsn(0).timeout(14).retryCnt(7).rnrRetry(7).maxRdAtomic(1)
                .build());
    }

    /** One signalled RDMA WRITE or READ between local {@code (addr, lkey)} and remote {@code (raddr, rkey)}, awaited. */
    void transfer(boolean write, long addr, int lkey, long raddr, int rkey, long length) {
        List<Sge> sgl = List.of(new Sge(addr, length, lkey));
        qp.postSend(write ? new SendWr.RdmaWrite(1, sgl, SendFlags.SIGNALED, raddr, rkey)
                : new SendWr.RdmaRead(1, sgl, SendFlags.SIGNALED, raddr, rkey));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (true) {
            List<WorkCompletion> wcs = cq.poll(1);
            if (!wcs.isEmpty()) {
                if (wcs.getFirst().status() != WcStatus.SUCCESS) {
                    throw new ErrnoException(Errno.EIO, String.format("nvme cmb: %s's RDMA %s of %#x+%d to %#x: %s",
                            device.name(), write ? "WRITE" : "READ", addr, length, raddr, wcs.getFirst().status()));
                }
                return;
            }
            if (System.nanoTime() > deadline) {
                throw new ErrnoException(Errno.ETIMEDOUT, "nvme cmb: " + device.name() + ": no completion for 10 s");
            }
            Thread.onSpinWait();
        }
    }

    @Override
    public void close() {
        try {
            ctx.close();
        } finally {
            closeMm();
        }
    }

    private void closeMm() {
        if (ownsMm) {
            mm.close();
        }
    }
}
