package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.verbs.AddressHandle;
import dev.dmaplane.rdma.verbs.CompletionChannel;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.rdma.verbs.VerbsContext;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;

import static dev.dmaplane.perftest.Perftest.*;

/**
 * One end of a perftest run (perftest's {@code struct pingpong_context}): address space, context, PD, CQ, per QP
 * a send region and a receive region.
 */
final class Side implements Far, AutoCloseable {
    private static final ValueLayout.OfLong BE_LONG =
            ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    /** The RDMA device this end runs on. */
    final String name;
    final AddressSpace mm;
    final VerbsContext ctx;
    final ProtectionDomain pd;
    /** Send completions, and receive completions too but for send_bw. */
    final CompletionQueue cq;
    /** {@code -e}: where {@link #cq} reports once armed; null when polling. */
    final CompletionChannel channel;
    /** {@code --use_srq}: the shared receive queue of this end's QPs; null when each QP has its own. */
    final SharedReceiveQueue srq;
    /** Receives a bandwidth run keeps posted per receive queue (per QP, or on the SRQ). */
    final int recvTarget;
    /**
     * send_bw's receive completions: a CQ of their own, as perftest gives SEND tests a {@code recv_cq}, so that
     * with {@code -b} the end that sends one way and the one that receives it never poll the same CQ.
     */
    final CompletionQueue rcq;
    final long buf;
    final long region;
    final long length;
    final MemoryRegion mr;
    final Gid gid;
    /**
     * The QPs; with the rdma_cm ({@link #viaCm}) each is made on its connection's id by {@link CmConnect}
     * ({@code rdma_create_qp}) and stays null until then.
     */
    final QueuePair[] qps;
    /** What every QP of this end is made with ({@code ctx_qp_create}'s {@code ibv_qp_init_attr}). */
    final QpInitAttr qpInit;
    /** Whether the QPs connect through the rdma_cm: {@code -R}, or an iWARP device (perftest forces it there). */
    final boolean viaCm;
    /** Each QP's first send PSN, random as perftest's ({@link Header#psn}). */
    final int[] psns;
    /** Whether the device is iWARP: its QPs connect through the rdma_cm, its WRITEs complete unacknowledged. */
    final boolean iwarp;
    /** iWARP or {@code -R}: the rdma_cm ids that connect this end's QPs, closed before the rest; else null. */
    CmConnect cm;
    /** UD: the address of the other end (perftest's {@code ah}), made once both ends exist. */
    AddressHandle ah;
    /**
     * Receives posted on each QP and not consumed yet, carried from one message size of {@code -a} to the next
     * (each covers the QP's whole receive region, so one posted for a small size serves a larger one); updated
     * by the thread that polls this end's receive completions.
     */
    final int[] recvsWaiting;
    final int sqDepth;
    final int rqDepth;
    /**
     * send_bw over iWARP between processes: sends posted on each QP and receives completed on each (over the
     * connection's life, across the sizes of {@code -a}), the counts perftest's receive credits compare
     * ({@link Credits}).
     */
    final long[] sendsTotal;
    final long[] receivesTotal;
    /** {@link #lastByte}'s buffer, reused: a side is polled by one thread, its end of the ping-pong. */
    private final byte[] lastBuf = new byte[1];
    private final MemorySegment last = MemorySegment.ofArray(lastBuf);
    /** {@link #readLong}'s buffer, reused by the one thread that posts this end's sends. */
    private final MemorySegment word = MemorySegment.ofArray(new byte[8]);

    Side(Machine machine, RdmaCore core, String dev, PerfConfig cfg, long region, Random psnSource) {
        var device = core.device(dev).orElseThrow(() -> new ErrnoException(Errno.ENODEV,
                "perftest: no RDMA device " + dev + " (is the Soft-RoCE driver bound?)"));
        int maxInline = device.attr().maxInlineData();
        if (cfg.inlineSize() > maxInline) { // checked before anything is set up for this side
            throw new ErrnoException(Errno.EINVAL, "perftest: invalid inline size -I " + cfg.inlineSize() + ": "
                    + dev + " takes at most " + maxInline + " bytes inline");
        }
        name = dev;
        iwarp = device.nodeType().transport() == NodeType.Transport.IWARP;
        mm = machine.newAddressSpace("perftest-" + dev);
        ctx = device.open(mm);
        this.region = region;
        sqDepth = Math.max(cfg.txDepth(), 16);
        rqDepth = Math.max(cfg.txDepth(), 16);
        pd = ctx.allocPd();
        channel = cfg.events() ? ctx.createCompChannel() : null;
        cq = ctx.createCq(Math.max(cfg.qps() * (sqDepth + rqDepth) + 16, 64), channel, 0);
        if (channel != null) {
            cq.reqNotify(false);
        }
        rcq = cfg.test() == PerfConfig.Test.SEND_BW ? ctx.createCq(Math.max(cfg.qps() * rqDepth + 16, 64), null, 0) : cq;
        length = 2 * region * cfg.qps();
        buf = mm.mmapAnonymous(length, Prot.PROT_READ | Prot.PROT_WRITE);
        mr = pd.regMr(buf, length, ALL);
        gid = ctx.queryGid(1, GID_INDEX);
        // an SRQ holds as many receives as all the QPs would have had: none of them meets RNR for want of one
        recvTarget = cfg.srq() ? Math.min(cfg.qps() * rqDepth, device.attr().maxSrqWr()) : rqDepth;
        srq = cfg.srq() ? pd.createSrq(new SrqAttr(recvTarget, 1, 0)) : null;
        qps = new QueuePair[cfg.qps()];
        recvsWaiting = new int[cfg.qps()];
        sendsTotal = new long[cfg.qps()];
        receivesTotal = new long[cfg.qps()];
        psns = new int[cfg.qps()];
        // as perftest's ctx_qp_create: the QP's inline capacity is the -I asked for
        qpInit = new QpInitAttr(cq, rcq, srq, new QpCap(sqDepth, rqDepth, 1, 1, cfg.inlineSize()),
                cfg.connection(), false);
        viaCm = iwarp || cfg.rdmaCm();
        for (int q = 0; q < qps.length; q++) {
            if (!viaCm) { // create_qp_main: with RDMA_CM, rdma_create_qp on the connection's id instead
                qps[q] = pd.createQp(qpInit);
            }
            psns[q] = Header.psn(psnSource);
        }
    }

    @Override
    public long src(int q) {
        return buf + 2L * q * region;
    }

    @Override
    public long dst(int q) {
        return src(q) + region;
    }

    @Override
    public int rkey() {
        return mr.rkey();
    }

    @Override
    public int qpn(int q) {
        return qps[q].qpNum();
    }

    @Override
    public Gid gid() {
        return gid;
    }

    @Override
    public boolean sharedRq() {
        return srq != null;
    }

    @Override
    public int psn(int q) {
        return psns[q];
    }

    Sge sge(long addr, int len) {
        return new Sge(addr, len, mr.lkey());
    }

    void write(long addr, byte[] b) {
        mm.write(addr, MemorySegment.ofArray(b));
    }

    byte[] read(long addr, int len) {
        byte[] r = new byte[len];
        mm.read(addr, MemorySegment.ofArray(r));
        return r;
    }

    /** The big-endian 8 bytes at {@code addr}. */
    long readLong(long addr) {
        mm.read(addr, word);
        return word.get(BE_LONG, 0);
    }

    byte lastByte(long addr, int len) {
        mm.read(addr + len - 1, last);
        return lastBuf[0];
    }

    @Override
    public void close() {
        try {
            if (cm != null) {
                cm.close();
            }
        } finally {
            ctx.close();
            mm.close();
        }
    }
}
