package dev.dmaplane.gpudirect;

import dev.dmaplane.dmabuf.DmaBuf;
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
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.MemoryRegion;
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

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * One RDMA end of the demo, as an application opens it with libibverbs: an address space, a context on the device,
 * a PD, a CQ and one RC QP; host buffers registered with {@code ibv_reg_mr}, VRAM with {@code ibv_reg_dmabuf_mr}.
 * Transfers post whole windows of signalled work requests and poll until each completed, as perftest's
 * {@code ib_write_bw} does.
 */
final class Hca implements AutoCloseable {
    /** Access of every region: the far end writes and reads it. */
    static final int ACCESS = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
    private static final int DEPTH = 64;
    private static final long STALL_NS = 10_000_000_000L;

    final String name;
    final RdmaDevice device;
    final AddressSpace mm;
    final VerbsContext ctx;
    final ProtectionDomain pd;
    final CompletionQueue cq;
    final QueuePair qp;
    private long nextWrId;

    /** A host buffer of this end and its MR. */
    record HostBuffer(long addr, long length, MemoryRegion mr) {
    }

    Hca(Machine machine, RdmaCore core, String name) {
        this.name = name;
        this.device = core.device(name).orElseThrow(() -> new ErrnoException(Errno.ENODEV,
                "gpudirect: no RDMA device " + name + " (is the Soft-RoCE driver bound?)"));
        this.mm = machine.newAddressSpace("gpudirect-" + name);
        try {
            this.ctx = device.open(mm);
        } catch (RuntimeException e) {
            mm.close();
            throw e;
        }
        try {
            this.pd = ctx.allocPd();
            this.cq = ctx.createCq(4 * DEPTH, null, 0);
            this.qp = pd.createQp(new QpInitAttr(cq, cq, null, new QpCap(DEPTH, DEPTH, 1, 1, 0), QpType.RC, false));
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /** Anonymous memory of {@code length} bytes registered for local and remote access. */
    HostBuffer host(long length) {
        long addr = mm.mmapAnonymous(length, Prot.PROT_READ | Prot.PROT_WRITE);
        return new HostBuffer(addr, length, pd.regMr(addr, length, ACCESS));
    }

    /** {@code ibv_reg_dmabuf_mr(pd, offset, length, iova, fd, access)}. */
    MemoryRegion dmabufMr(DmaBuf buf, long offset, long length, long iova) {
        return pd.regDmabufMr(offset, length, iova, buf, ACCESS);
    }

    void put(HostBuffer b, long offset, MemorySegment bytes) {
        mm.write(b.addr() + offset, bytes);
    }

    void get(HostBuffer b, long offset, MemorySegment bytes) {
        mm.read(b.addr() + offset, bytes);
    }

    /** Brings both QPs to RTS, each aimed at the other (perftest's out-of-band exchange, done in-process). */
    static void connect(Hca a, Hca b) {
        a.connectTo(b);
        b.connectTo(a);
    }

    private void connectTo(Hca peer) {
        Gid gid = peer.ctx.queryGid(1, 1);
        int rd = Math.max(1, Math.min(16, ctx.queryDevice().maxQpRdAtom()));
        qp.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).accessFlags(ACCESS).build());
        qp.modify(QpAttr.builder().state(QpState.RTR).av(AhAttr.roce(gid, 1, 1)).pathMtu(ctx.queryPort(1).activeMtu())
                .destQpn(peer.qp.qpNum()).rqPsn(0).maxDestRdAtomic(rd).minRnrTimer(1).build());
        qp.modify(QpAttr.builder().state(QpState.RTS).sqPsn(0).timeout(14).retryCnt(7).rnrRetry(7).maxRdAtomic(rd)
                .build());
    }

    /** RDMA WRITEs {@code length} bytes from local {@code (addr, lkey)} to remote {@code (raddr, rkey)}, {@code message} bytes per request. */
    void write(long addr, int lkey, long raddr, int rkey, long length, long message) {
        transfer(true, addr, lkey, raddr, rkey, length, message);
    }

    /** RDMA READs {@code length} bytes of remote {@code (raddr, rkey)} into local {@code (addr, lkey)}. */
    void read(long addr, int lkey, long raddr, int rkey, long length, long message) {
        transfer(false, addr, lkey, raddr, rkey, length, message);
    }

    private void transfer(boolean write, long addr, int lkey, long raddr, int rkey, long length, long message) {
        long posted = 0;
        long done = 0;
        int outstanding = 0;
        long stall = System.nanoTime();
        while (done < length) {
            while (posted < length && outstanding < DEPTH) {
                long n = Math.min(message, length - posted);
                List<Sge> sgl = List.of(new Sge(addr + posted, n, lkey));
                long id = nextWrId++;
                qp.postSend(write ? new SendWr.RdmaWrite(id, sgl, SendFlags.SIGNALED, raddr + posted, rkey)
                        : new SendWr.RdmaRead(id, sgl, SendFlags.SIGNALED, raddr + posted, rkey));
                posted += n;
                outstanding++;
            }
            List<WorkCompletion> wcs = cq.poll(DEPTH);
            for (WorkCompletion wc : wcs) {
                if (wc.status() != WcStatus.SUCCESS) {
                    throw new ErrnoException(Errno.EIO, String.format("gpudirect: %s's RDMA %s of %#x+%d to %#x: %s",
                            name, write ? "WRITE" : "READ", addr, length, raddr, wc.status()));
                }
                outstanding--;
                done += Math.min(message, length - done);
                stall = System.nanoTime();
            }
            if (wcs.isEmpty()) {
                if (System.nanoTime() - stall > STALL_NS) {
                    throw new ErrnoException(Errno.ETIMEDOUT, "gpudirect: " + name + ": no completion for 10 s, "
                            + outstanding + " requests outstanding");
                }
                Thread.onSpinWait();
            }
        }
    }

    @Override
    public void close() {
        try {
            if (ctx != null) {
                ctx.close();
            }
        } finally {
            mm.close();
        }
    }
}
