package dev.dmaplane.rdma;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.loopback.LoopbackDriver;
import dev.dmaplane.rdma.loopback.LoopbackProvider;
import dev.dmaplane.rdma.testing.Verbs;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.DeviceCap;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.OdpOp;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.TestMachines;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.function.UnaryOperator;

/**
 * The default machine with its two RDMA HCA functions driven by the loopback test HCA ({@code rxe0} on
 * 0000:04:00.0, {@code rxe1} on 0000:05:00.0), one process address space, and helpers for QPs.
 */
public final class Fixture implements AutoCloseable {
    public final Machine machine;
    public final RdmaCore core;
    public final LoopbackDriver driver;
    public final AddressSpace mm;
    private final List<VerbsContext> opened = new ArrayList<>();

    public Fixture() {
        this(TestMachines.boot(TestMachines.DEFAULT_COPYENGINE), b -> b);
    }

    public Fixture(UnaryOperator<DeviceAttr.Builder> attrs) {
        this(TestMachines.boot(TestMachines.DEFAULT_COPYENGINE), attrs);
    }

    public Fixture(Machine machine, UnaryOperator<DeviceAttr.Builder> attrs) {
        this.machine = machine;
        this.core = new RdmaCore(machine.tracer());
        this.driver = new LoopbackDriver(core, (fn, netdev) -> attrs.apply(defaults().nodeGuid(nodeGuid(netdev.mac())))
                .build());
        machine.devices().registerDriver(driver);
        this.mm = machine.newAddressSpace("app");
    }

    /**
     * The node GUID rxe gives a device on a netdev with {@code mac} ({@code rxe_init_device_param}:
     * {@code addrconf_addr_eui48}, the MAC as a modified EUI-64): the interface ID of the port's link-local GID.
     */
    public static long nodeGuid(byte[] mac) {
        byte[] g = Gid.linkLocal(mac).raw();
        long guid = 0;
        for (int i = 8; i < 16; i++) {
            guid = guid << 8 | (g[i] & 0xff);
        }
        return guid;
    }

    /** A soft HCA's attributes with windows, ODP on RC and resizable SRQs (node GUID of eth0's MAC). */
    public static DeviceAttr.Builder defaults() {
        return DeviceAttr.builder().fwVer("1.0.0").nodeGuid(0x001da0fffe000001L).vendorId(0x1da0).vendorPartId(2)
                .caps(EnumSet.of(DeviceCap.MEM_WINDOW, DeviceCap.MEM_WINDOW_TYPE_2B, DeviceCap.ON_DEMAND_PAGING,
                        DeviceCap.SRQ_RESIZE, DeviceCap.N_NOTIFY_CQ, DeviceCap.MEM_MGT_EXTENSIONS,
                        DeviceCap.PORT_ACTIVE_EVENT, DeviceCap.RC_RNR_NAK_GEN))
                .rcOdpCaps(EnumSet.allOf(OdpOp.class));
    }

    public RdmaDevice device() {
        return core.device("rxe0").orElseThrow();
    }

    public LoopbackProvider provider() {
        return driver.providers.get("rxe0");
    }

    public VerbsContext open() {
        VerbsContext c = device().open(mm);
        opened.add(c);
        return c;
    }

    /** Anonymous read-write memory of the process. */
    public long alloc(long length) {
        return mm.mmapAnonymous(length, Prot.PROT_READ | Prot.PROT_WRITE);
    }

    public void write(long addr, byte[] bytes) {
        mm.write(addr, MemorySegment.ofArray(bytes));
    }

    public byte[] read(long addr, int length) {
        byte[] b = new byte[length];
        mm.read(addr, MemorySegment.ofArray(b));
        return b;
    }

    public static final int ALL_REMOTE = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ | Access.REMOTE_ATOMIC;

    /** RESET -> INIT with exactly the required attributes of {@code type}. */
    public static QpAttr toInit(QpType type) {
        QpAttr.Builder b = QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1);
        return (type == QpType.UD ? b.qkey(0x11111111) : b.accessFlags(ALL_REMOTE)).build();
    }

    /** INIT -> RTR with exactly the required attributes of {@code type}. */
    public static QpAttr toRtr(QpType type, int destQpn) {
        QpAttr.Builder b = QpAttr.builder().state(QpState.RTR);
        if (type != QpType.UD) {
            b.av(AhAttr.roce(Gid.parse("::ffff:10.0.0.1"), 1, 1)).pathMtu(Mtu.MTU_1024).destQpn(destQpn).rqPsn(0);
        }
        if (type == QpType.RC) {
            b.maxDestRdAtomic(4).minRnrTimer(12);
        }
        return b.build();
    }

    /** RTR -> RTS with exactly the required attributes of {@code type}. */
    public static QpAttr toRts(QpType type) {
        QpAttr.Builder b = QpAttr.builder().state(QpState.RTS).sqPsn(0);
        if (type == QpType.RC) {
            b.timeout(14).retryCnt(7).rnrRetry(7).maxRdAtomic(4);
        }
        return b.build();
    }

    public static QpInitAttr qpInit(CompletionQueue cq, QpType type, int depth) {
        return new QpInitAttr(cq, cq, null, new QpCap(depth, depth, 4, 4, 64), type, false);
    }

    /** Two QPs of {@code type} on {@code cq}, connected to each other (UD: both in RTS) . */
    public static QueuePair[] pair(ProtectionDomain pd, CompletionQueue cq, QpType type, int depth) {
        QueuePair a = pd.createQp(qpInit(cq, type, depth));
        QueuePair b = pd.createQp(qpInit(cq, type, depth));
        connect(a, b.qpNum());
        connect(b, a.qpNum());
        return new QueuePair[]{a, b};
    }

    public static void connect(QueuePair qp, int dest) {
        Verbs.connect(qp, toInit(qp.type()), toRtr(qp.type(), dest), toRts(qp.type()));
    }

    /** Polls until {@code n} completions came (the loopback works synchronously, so they are there). */
    public static List<WorkCompletion> poll(CompletionQueue cq, int n) {
        return Verbs.poll(cq, n, Duration.ZERO);
    }

    @Override
    public void close() {
        for (VerbsContext c : opened) {
            c.close();
        }
        core.close();
        if (!mm.isClosed()) {
            mm.close();
        }
        machine.close();
    }
}
