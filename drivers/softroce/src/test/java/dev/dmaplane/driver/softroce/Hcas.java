package dev.dmaplane.driver.softroce;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.testing.Verbs;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.TestMachines;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;

/**
 * The default machine with the Soft-RoCE driver bound to both HCA functions, and one "host" per HCA: a process
 * address space, a context, a PD, a CQ and a registered buffer.
 */
final class Hcas implements AutoCloseable {
    static final long BUF = 4L << 20;
    /** How long {@link #poll} and {@link #event} wait for what the HCAs' engines deliver. */
    static final Duration WAIT = Duration.ofSeconds(10);
    static final int ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ | Access.REMOTE_ATOMIC;

    final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    final RdmaCore core = new RdmaCore(machine.tracer());
    final SoftRoceDriver driver = new SoftRoceDriver(core);
    final Host a;
    final Host b;

    Hcas() {
        machine.devices().registerDriver(driver);
        a = new Host(machine, core, "rxe0");
        b = new Host(machine, core, "rxe1");
    }

    /** An application on {@code dev} of {@code machine}'s RDMA core: address space, context, PD, CQ, a region. */
    static final class Host {
        final String dev;
        final AddressSpace mm;
        final VerbsContext ctx;
        final ProtectionDomain pd;
        final CompletionQueue cq;
        final long buf;
        final MemoryRegion mr;
        final Gid gid;

        Host(Machine machine, RdmaCore core, String dev) {
            this.dev = dev;
            mm = machine.newAddressSpace("app-" + dev);
            ctx = core.device(dev).orElseThrow().open(mm);
            pd = ctx.allocPd();
            cq = ctx.createCq(4096, null, 0);
            buf = mm.mmapAnonymous(BUF, Prot.PROT_READ | Prot.PROT_WRITE);
            mr = pd.regMr(buf, BUF, ALL);
            gid = ctx.queryGid(1, 1);
        }

        Sge sge(long off, long len) {
            return new Sge(buf + off, len, mr.lkey());
        }

        void write(long off, byte[] bytes) {
            mm.write(buf + off, MemorySegment.ofArray(bytes));
        }

        byte[] read(long off, int len) {
            byte[] r = new byte[len];
            mm.read(buf + off, MemorySegment.ofArray(r));
            return r;
        }

        QueuePair rc() {
            return pd.createQp(new QpInitAttr(cq, cq, null, new QpCap(256, 256, 4, 4, 64), QpType.RC, false));
        }

        QueuePair ud() {
            return pd.createQp(new QpInitAttr(cq, cq, null, new QpCap(64, 64, 4, 4, 64), QpType.UD, false));
        }
    }

    /**
     * The usual RC path: INIT with {@code access}, RTR to the peer, RTS with timeout 14 (4.096 us * 2^14 = 67 ms):
     * long enough that a loaded 2-core machine never fires a transport retry by accident (8 tries tolerate half a
     * second of scheduling delay), short enough that peer-gone tests end quickly.
     */
    static void connect(QueuePair qp, QueuePair peer, Gid peerGid, int access, int rnrRetry, int retryCnt) {
        connect(qp, peer, peerGid, access, rnrRetry, retryCnt, 0x100);
    }

    static void connect(QueuePair qp, QueuePair peer, Gid peerGid, int access, int rnrRetry, int retryCnt, int psn) {
        connect(qp, peer.qpNum(), peerGid, access, rnrRetry, retryCnt, psn, 14);
    }

    /**
     * {@link #connect} to a peer QP known by its number (another process's, exchanged out of band), with the
     * transport {@code timeout} exponent (4.096 us * 2^timeout).
     */
    static void connect(QueuePair qp, int peerQpn, Gid peerGid, int access, int rnrRetry, int retryCnt, int psn,
                        int timeout) {
        Verbs.connect(qp, QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).accessFlags(access).build(),
                QpAttr.builder().state(QpState.RTR).av(AhAttr.roce(peerGid, 1, 1)).pathMtu(Mtu.MTU_1024)
                        .destQpn(peerQpn).rqPsn(psn).maxDestRdAtomic(4).minRnrTimer(1).build(),
                QpAttr.builder().state(QpState.RTS).sqPsn(psn).timeout(timeout).retryCnt(retryCnt).rnrRetry(rnrRetry)
                        .maxRdAtomic(4).build());
    }

    /** An RC pair a (on rxe0) ↔ b (on rxe1). */
    QueuePair[] pair() {
        return pair(ALL, ALL, 7, 7);
    }

    QueuePair[] pair(int accessA, int accessB, int rnrRetry, int retryCnt) {
        QueuePair qa = a.rc();
        QueuePair qb = b.rc();
        connect(qa, qb, b.gid, accessA, rnrRetry, retryCnt);
        connect(qb, qa, a.gid, accessB, rnrRetry, retryCnt);
        return new QueuePair[]{qa, qb};
    }

    /** Polls until {@code n} completions came, or fails after 10 s. */
    static List<WorkCompletion> poll(CompletionQueue cq, int n) {
        return Verbs.poll(cq, n, WAIT);
    }

    static WorkCompletion one(CompletionQueue cq) {
        return poll(cq, 1).getFirst();
    }

    /** The engine of the HCA the driver registered as {@code dev}. */
    Engine engine(String dev) {
        return driver.providers.get(dev).engine;
    }

    /** {@code n} bytes of a seeded random pattern. */
    static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    /** The next async event of {@code ctx}, waited for at most 10 s. */
    static AsyncEvent event(VerbsContext ctx) {
        return Verbs.event(ctx, WAIT);
    }

    static long softroceThreads() {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith("softroce-") && t.isAlive()).count();
    }

    /** The engines a test crashes on purpose: {@link #close} does not count them as failures. */
    final Set<String> crashExpected = new HashSet<>();

    /** The fatal errors the engines met, as "device: exception" (none expected in a healthy test). */
    List<String> crashes() {
        return driver.providers.entrySet().stream().filter(e -> e.getValue().engine.crash() != null)
                .map(e -> e.getKey() + ": " + e.getValue().engine.crash()).sorted().toList();
    }

    /** Turns the fabric's loss and reordering injection off first: the teardown's own packets must all arrive. */
    @Override
    public void close() {
        driver.fabric.loss = null;
        driver.fabric.swap = null;
        List<String> crashes = crashes().stream()
                .filter(c -> crashExpected.stream().noneMatch(d -> c.startsWith(d + ": "))).toList();
        for (Host h : new Host[]{a, b}) {
            h.ctx.close();
        }
        if (machine.devices().drivers().contains(driver)) {
            machine.devices().unregisterDriver(driver);
        }
        core.close();
        for (Host h : new Host[]{a, b}) {
            if (!h.mm.isClosed()) {
                h.mm.close();
            }
        }
        machine.close();
        if (!crashes.isEmpty()) {
            throw new AssertionError("engines met fatal errors: " + crashes);
        }
    }
}
