package dev.dmaplane.rdma.loopback;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwCq;
import dev.dmaplane.rdma.spi.HwMr;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.NetdevInfo;
import dev.dmaplane.rdma.spi.QpStateMachine;
import dev.dmaplane.rdma.spi.RdmaDeviceHandle;
import dev.dmaplane.rdma.spi.RdmaProvider;
import dev.dmaplane.rdma.spi.RecvResult;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.PortState;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.BiConsumer;

/**
 * A minimal loopback HCA for the tests (the Soft-RoCE driver is a separate bundle): every QP talks to QPs of the
 * same device, work is done synchronously in the doorbell, and every byte moves through the device's bus master
 * via {@link dev.dmaplane.rdma.spi.MemoryAccess}. A missing receive is an RNR retry exhaustion (rnr_retry 0).
 * {@link #pause()} holds work back to leave it outstanding.
 */
public final class LoopbackProvider implements RdmaProvider {
    private final Device device;
    private final DeviceAttr attr;
    private volatile PortAttr port;
    private volatile NetdevInfo netdev;
    private volatile RdmaDeviceHandle handle;
    private volatile boolean paused;
    /** Hook calls, for tests to look at. */
    public final List<String> calls = new CopyOnWriteArrayList<>();
    /** Runs at the start of every send doorbell (tests block in it to hold a call in flight). */
    public volatile Runnable beforePost = () -> {
    };
    /** What {@link #nodeType()} answers (tests make the loopback an iWARP RNIC with it). */
    public volatile NodeType nodeType = NodeType.CA;
    /** The transitions the {@link #modifyQp} hook was called with ("INIT -> RTR"). */
    public final List<String> modifies = new CopyOnWriteArrayList<>();
    /** The provider's own QP state machine ({@link #qpStateMachine()}); null for the core's IB table. */
    public volatile QpStateMachine qpStates;
    /** The provider's post-time check ({@link #checkSend}); accepts everything by default. */
    public volatile BiConsumer<HwQp, SendWr> sendCheck = (qp, wr) -> {
    };
    /** Ranges the ODP notifier told the provider to forget. */
    public final List<long[]> invalidations = new CopyOnWriteArrayList<>();

    public LoopbackProvider(Device device, DeviceAttr attr, NetdevInfo netdev) {
        this.device = device;
        this.attr = attr;
        this.netdev = netdev;
        this.port = PortAttr.roce(PortState.ACTIVE, Mtu.MTU_4096, Mtu.fromNetdevMtu(netdev.mtu()), 16);
    }

    public static NetdevInfo defaultNetdev(String name, int last, String... ips) {
        List<InetAddress> a = new ArrayList<>();
        try {
            for (String ip : ips) {
                a.add(InetAddress.getByName(ip));
            }
        } catch (UnknownHostException e) {
            throw new IllegalArgumentException(e);
        }
        return new NetdevInfo(name, new byte[]{0x02, 0x1d, (byte) 0xa0, 0, 0, (byte) last}, 1500, a);
    }

    public void attach(RdmaDeviceHandle h) {
        this.handle = h;
    }

    public RdmaDeviceHandle handle() {
        return handle;
    }

    public void setNetdev(NetdevInfo nd) {
        this.netdev = nd;
    }

    public void setPortState(PortState s) {
        this.port = port.withState(s);
    }

    public void pause() {
        paused = true;
    }

    /** Resumes and processes whatever waits on {@code qps}. */
    public void resume(HwQp... qps) {
        paused = false;
        for (HwQp q : qps) {
            process(q);
        }
    }

    @Override
    public String driverName() {
        return "loopback";
    }

    @Override
    public NodeType nodeType() {
        return nodeType;
    }

    @Override
    public Optional<QpStateMachine> qpStateMachine() {
        return Optional.ofNullable(qpStates);
    }

    @Override
    public void modifyQp(HwQp qp, QpAttr attr, QpState from, QpState to) {
        modifies.add(from + " -> " + to);
    }

    @Override
    public void checkSend(HwQp qp, SendWr wr) {
        sendCheck.accept(qp, wr);
    }

    @Override
    public Device dmaDevice() {
        return device;
    }

    @Override
    public DeviceAttr deviceAttr() {
        return attr;
    }

    @Override
    public PortAttr portAttr(int p) {
        return port;
    }

    @Override
    public NetdevInfo netdev(int p) {
        return netdev;
    }

    @Override
    public void createQp(HwQp qp) {
        calls.add("createQp " + qp.qpNum());
    }

    @Override
    public void destroyQp(HwQp qp) {
        calls.add("destroyQp " + qp.qpNum());
    }

    @Override
    public void regMr(HwMr mr) {
        calls.add("regMr 0x" + Integer.toHexString(mr.lkey()));
    }

    @Override
    public void deregMr(HwMr mr) {
        calls.add("deregMr 0x" + Integer.toHexString(mr.lkey()));
    }

    @Override
    public void invalidateRange(HwMr mr, long iova, long length) {
        invalidations.add(new long[]{iova, length});
    }

    /** What {@link #invalidatesRegions()} answers: false as rxe, true as siw. */
    public volatile boolean regionInvalidation;

    @Override
    public boolean invalidatesRegions() {
        return regionInvalidation;
    }

    /** Whether this HCA says it progresses lazily in {@link #pollCq} (the core then calls it on every poll). */
    public volatile boolean lazyProgress;

    @Override
    public boolean progressesOnPoll() {
        return lazyProgress;
    }

    @Override
    public void pollCq(HwCq cq) {
        calls.add("pollCq");
    }

    @Override
    public void postSend(HwQp qp) {
        beforePost.run();
        if (!paused) {
            process(qp);
        }
    }

    /** Runs every startable send of {@code qp} to completion. */
    public void process(HwQp qp) {
        SendWqe w;
        while ((w = qp.nextSend()) != null) {
            qp.completeSend(w, execute(qp, w));
        }
    }

    private WcStatus execute(HwQp qp, SendWqe w) {
        var mem = handle.memory();
        try {
            if (w.opcode().isLocal()) {
                return mem.executeLocal(qp, w);
            }
            HwQp target = handle.qp(destination(qp, w)).orElse(null);
            if (target == null || !receiving(target.state())) {
                return WcStatus.RETRY_EXC_ERR;
            }
            return switch (w.wr()) {
                case SendWr.Send s -> send(qp, w, target, 0, 0);
                case SendWr.SendWithImm s -> send(qp, w, target, 1, s.immData());
                case SendWr.SendWithInv s -> send(qp, w, target, 2, s.invalidateRkey());
                case SendWr.RdmaWrite s -> write(qp, w, target, s.remoteAddr(), s.rkey(), false, 0);
                case SendWr.RdmaWriteWithImm s -> write(qp, w, target, s.remoteAddr(), s.rkey(), true, s.immData());
                case SendWr.RdmaRead s -> read(qp, w, target, s);
                case SendWr.AtomicCmpAndSwp s -> atomic(qp, w, target, s.remoteAddr(), s.rkey(), true, s.compare(), s.swap());
                case SendWr.AtomicFetchAndAdd s -> atomic(qp, w, target, s.remoteAddr(), s.rkey(), false, s.add(), 0);
                default -> WcStatus.LOC_QP_OP_ERR;
            };
        } catch (AccessFault f) {
            return f.status();
        }
    }

    private static boolean receiving(QpState s) {
        return s == QpState.RTR || s == QpState.RTS || s == QpState.SQD || s == QpState.SQE;
    }

    private static int destination(HwQp qp, SendWqe w) {
        if (qp.type() == QpType.UD) {
            return switch (w.wr()) {
                case SendWr.Send s -> s.ud().remoteQpn();
                case SendWr.SendWithImm s -> s.ud().remoteQpn();
                default -> -1;
            };
        }
        return qp.attr().destQpNum();
    }

    private MemorySegment payload(HwQp qp, SendWqe w) {
        if (w.inlineData() != null) {
            return w.inlineData();
        }
        MemorySegment buf = MemorySegment.ofArray(new byte[(int) w.length()]);
        handle.memory().gather(qp, w.wr().sgList(), buf);
        return buf;
    }

    /** kind 0 plain, 1 with immediate, 2 with invalidate. */
    private WcStatus send(HwQp qp, SendWqe w, HwQp target, int kind, int extra) {
        MemorySegment data = payload(qp, w);
        if (qp.type() == QpType.UD) {
            SendWr wr = w.wr();
            int qkey = wr instanceof SendWr.Send s ? s.ud().remoteQkey() : ((SendWr.SendWithImm) wr).ud().remoteQkey();
            if (qkey < 0) {
                qkey = qp.attr().qkey();
            }
            if (target.type() != QpType.UD || target.attr().qkey() != qkey) {
                return WcStatus.SUCCESS; // a UD datagram with a wrong Q_Key is silently dropped
            }
            MemorySegment grh = MemorySegment.ofArray(new byte[40 + (int) data.byteSize()]);
            MemorySegment.copy(data, 0, grh, 40, data.byteSize());
            data = grh;
        }
        RecvWqe r = target.takeRecv();
        if (r == null) {
            return WcStatus.RNR_RETRY_EXC_ERR;
        }
        if (kind == 2 && !handle.memory().invalidateRemote(target, extra)) {
            target.completeRecv(r, RecvResult.error(WcStatus.REM_INV_REQ_ERR));
            return WcStatus.REM_INV_REQ_ERR;
        }
        try {
            handle.memory().scatter(target, r.wr().sgList(), data);
        } catch (AccessFault f) {
            target.completeRecv(r, RecvResult.error(f.status()));
            return f.status() == WcStatus.LOC_LEN_ERR ? WcStatus.REM_INV_REQ_ERR : WcStatus.REM_OP_ERR;
        }
        boolean sol = w.solicited();
        RecvResult res = switch (kind) {
            case 1 -> RecvResult.sendWithImm(data.byteSize(), qp.qpNum(), extra, sol);
            case 2 -> RecvResult.sendWithInv(data.byteSize(), qp.qpNum(), extra, sol);
            default -> RecvResult.send(data.byteSize(), qp.qpNum(), sol);
        };
        target.completeRecv(r, qp.type() == QpType.UD ? res.withGrh() : res);
        return WcStatus.SUCCESS;
    }

    private WcStatus write(HwQp qp, SendWqe w, HwQp target, long raddr, int rkey, boolean imm, int immData) {
        MemorySegment data = payload(qp, w);
        try (DmaLease l = handle.memory().remote(target, rkey, raddr, data.byteSize(), Access.REMOTE_WRITE)) {
            l.write(0, data);
        } catch (AccessFault f) {
            responderError(target, f);
            return f.status();
        } catch (DmaFaultException e) {
            return WcStatus.REM_OP_ERR;
        }
        if (imm) {
            RecvWqe r = target.takeRecv();
            if (r == null) {
                return WcStatus.RNR_RETRY_EXC_ERR;
            }
            target.completeRecv(r, RecvResult.writeWithImm(data.byteSize(), qp.qpNum(), immData, w.solicited()));
        }
        return WcStatus.SUCCESS;
    }

    private WcStatus read(HwQp qp, SendWqe w, HwQp target, SendWr.RdmaRead s) {
        MemorySegment buf = MemorySegment.ofArray(new byte[(int) w.length()]);
        try (DmaLease l = handle.memory().remote(target, s.rkey(), s.remoteAddr(), w.length(), Access.REMOTE_READ)) {
            l.read(0, buf);
        } catch (AccessFault f) {
            responderError(target, f);
            return f.status();
        }
        handle.memory().scatter(qp, s.sgList(), buf);
        return WcStatus.SUCCESS;
    }

    private WcStatus atomic(HwQp qp, SendWqe w, HwQp target, long raddr, int rkey, boolean cas, long a, long b) {
        long old;
        try (DmaLease l = handle.memory().remote(target, rkey, raddr, 8, Access.REMOTE_ATOMIC)) {
            old = cas ? l.compareAndSwap(0, a, b) : l.fetchAndAdd(0, a);
        } catch (AccessFault f) {
            responderError(target, f);
            return f.status();
        }
        MemorySegment out = MemorySegment.ofArray(new byte[8]);
        out.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, old);
        handle.memory().scatter(qp, w.wr().sgList(), out);
        return WcStatus.SUCCESS;
    }

    /** A responder access error is a class C error: the responder's RC QP goes to error too. */
    private static void responderError(HwQp target, AccessFault f) {
        if (f.status() == WcStatus.REM_ACCESS_ERR && target.type() == QpType.RC) {
            target.enterError();
        }
    }
}
