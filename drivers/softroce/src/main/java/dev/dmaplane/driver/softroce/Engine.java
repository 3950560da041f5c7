package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.PcapFile;
import dev.dmaplane.rdma.spi.RdmaDeviceHandle;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpAttrMask;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.Sge;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * The per-HCA engine: the {@link Requester} ({@code rxe_req.c}), the {@link Responder} ({@code rxe_resp.c}) and the
 * {@link Completer} ({@code rxe_comp.c}) of every QP of the device, with the per-QP state they share
 * ({@link QpCtx}), run by its {@link Scheduler} as rxe runs its tasks ({@code rxe_task.c}): by whichever thread has
 * work for the engine and finds it idle, in that thread (a doorbell, a packet from the fabric), and by the engine's
 * own worker thread for the {@link Timers}. Work that arrives while another thread runs the engine is queued here,
 * and that thread runs it before it lets the engine go ({@link #release}). It counts what it does in its
 * {@link Counters} ({@code rxe_hw_counters.c}).
 * Packets it sends are collected and handed to the fabric as one burst per pass; the responder acknowledges each
 * burst with one coalesced ACK per QP (IBTA 9.7.5.1.1: an ACK acknowledges every PSN before it). RC messages are
 * pipelined up to {@link #MAX_INFLIGHT} per QP; retries (transport timeout and RNR) resend every message in flight
 * from the oldest one's first PSN (go-back-N).
 * <p>
 * Why one class of about 600 lines: it is the scheduling seam between the three task bodies, which live in their own
 * classes; what remains (passes, bursts, the release protocol, received batches) shares the engine's one lock.
 */
final class Engine {
    private static final Logger LOG = LoggerFactory.getLogger(Engine.class);
    /** With single packets, the requester asks for an acknowledgement every this many packets of a long message. */
    static final int ACK_EVERY = 64;
    /** RC messages in flight per QP. */
    static final int MAX_INFLIGHT = 256;
    /**
     * Messages at least this long whose payload is one SGE are sent cut-through: the packets carry the range of the
     * requester's lease and the responder's HCA stores it straight from there ({@link Packet.Payload.Span}); shorter
     * ones are gathered into the packets first.
     */
    static final long CUT_THROUGH_MIN = 16 * 1024;
    /** Packets collected before a pass hands them to the fabric. */
    static final int BURST = 64;

    private final String name;
    /** Where the packets go: the in-process fabric or a UDP socket. */
    final Transport transport;
    final Gid gid;
    volatile RdmaDeviceHandle handle;
    private final ConcurrentLinkedQueue<Packet> inbox = new ConcurrentLinkedQueue<>();
    private final ConcurrentLinkedQueue<QpCtx> ready = new ConcurrentLinkedQueue<>();
    private final Map<Integer, QpCtx> qps = new ConcurrentHashMap<>();
    private final Scheduler task;
    /** Held by whoever runs the engine, and by control hooks that change QP state (the {@link Scheduler}'s). */
    final ReentrantLock lock;
    final Counters counters = new Counters();
    final Timers timers = new Timers(this);

    // guarded by lock
    private ArrayList<Packet> tx = new ArrayList<>();
    private ArrayList<Packet> txSpare = new ArrayList<>();
    final ArrayList<QpCtx> acks = new ArrayList<>();
    /** The responder's remote lease and the requester's local one, kept for a round of a pass. */
    private final LeaseCache remoteLeases = new LeaseCache(1);
    /** As many as a burst has packets: short payloads are ranges of these until the burst leaves. */
    private final LeaseCache localLeases = new LeaseCache(BURST);
    final Requester requester = new Requester(this);
    final Completer completer = new Completer(this);
    final Responder responder = new Responder(this);
    final Gsi gsi = new Gsi(this);

    /** Whether the port's netdev has carrier: without it no packet leaves or arrives. */
    private volatile boolean carrier = true;
    /**
     * The unexpected exception that killed the HCA (a firmware crash), or null: once set, no pass runs, packets to the
     * port are dropped, and the worker reports it to the core ({@link RdmaDeviceHandle#fatal}) and ends.
     */
    private volatile Throwable crash;

    Engine(String name, Transport transport, Gid gid) {
        this.name = name;
        this.transport = transport;
        this.gid = gid;
        this.task = new Scheduler(this, name);
        this.lock = task.lock;
    }

    Gid gid() {
        return gid;
    }

    void start(RdmaDeviceHandle h) {
        this.handle = h;
        task.start();
    }

    /** Stops the worker and waits for it and for any other thread running the engine; nothing runs afterwards. */
    void stop() {
        task.stop();
        lock.lock(); // a pass another thread began before running fell ends before this returns
        try {
            inbox.clear();
            ready.clear();
            tx.clear();
            acks.clear();
        } finally {
            lock.unlock();
        }
    }

    boolean isRunning() {
        return task.workerAlive();
    }

    /** Whether the engine runs work: started, not stopped, not crashed. */
    boolean live() {
        return task.running() && crash == null;
    }

    /** Whether packets or doorbells wait for a pass. */
    boolean hasQueued() {
        return !inbox.isEmpty() || !ready.isEmpty();
    }

    /** The exception that killed the HCA, or null. */
    Throwable crash() {
        return crash;
    }

    /**
     * A burst from the fabric. If the engine is idle the calling (sending) thread runs it now, while the sender's
     * payload ranges are still leased (cut-through); otherwise the packets are stored, their payload copied off
     * the sender, for the thread running the engine (which runs them before it lets the engine go).
     */
    boolean receive(List<Packet> burst) {
        if (!live() || !carrier) {
            return false; // dropped, as on a link without carrier or by a dead HCA
        }
        if (!lock.isHeldByCurrentThread() && task.enterInline()) {
            try {
                if (!live()) {
                    return false;
                }
                counters.inlinePasses++;
                counters.burstsCutThrough++;
                guarded(() -> {
                    drainInbox(); // what was stored before comes first
                    for (Packet p : burst) {
                        receiveOne(p);
                    }
                    responder.flushAcks();
                    completer.flushRetries();
                });
                pass();
            } finally {
                release();
            }
            return true;
        }
        counters.burstsStored.incrementAndGet();
        for (Packet p : burst) {
            inbox.add(p.materialized());
        }
        task.runQueuedIfIdle(); // the holder may have let the engine go before they were queued
        return true;
    }

    /**
     * A datagram from the UDP transport ({@code rxe_rcv}), its IP and UDP headers and the start of its payload in
     * {@code head}, its UDP payload {@code udp}, the receiver's {@code icrc} given those headers and the GIDs of their
     * addresses ({@link WireCodec#decode(byte[], MemorySegment, boolean, Icrc, Gid, Gid)}): decoded
     * and checked (headers, ICRC, P_Key against the port's only entry, the default 0xFFFF, and a destination QP of
     * this HCA whose transport service the opcode names); a packet that fails a check is dropped and counted by
     * reason, never thrown. An RC or UC packet carries no source QPN: it is the destination QP's remote one, as the
     * QP context holds it. Returns the packet, or null when it was dropped; the transport hands a batch's packets to
     * {@link #receive} as one burst, before {@code udp} is used again (the packet's payload stays in it).
     */
    Packet accept(byte[] head, MemorySegment udp, Icrc icrc, Gid src, Gid dst) {
        WireCodec.Decoded d;
        try {
            d = WireCodec.decode(head, udp, true, icrc, src, dst);
        } catch (RuntimeException x) {
            LOG.error("{}: decoding a datagram of {} bytes failed: dropped as malformed", name,
                    WireCodec.BTH_AT + udp.byteSize(), x);
            refuse(WireCodec.Drop.MALFORMED, x.toString());
            return null;
        }
        switch (d) {
            case WireCodec.Refused r -> {
                refuse(r.drop(), r.why());
                return null;
            }
            case WireCodec.Accepted a -> {
                if (!pkeyMatch(a.pkey(), WireCodec.DEFAULT_PKEY)) {
                    refuse(WireCodec.Drop.BAD_PKEY, String.format("P_Key 0x%04x", a.pkey()));
                    return null;
                }
                Packet p = a.packet();
                if (p.destQpn() == Gsi.QPN && a.service() == Opcode.Service.UD) {
                    return p; // the GSI, QP 1: checked by its receive
                }
                QpCtx c = qps.get(p.destQpn());
                if (c == null || a.service() != serviceOf(c.qp.type())) {
                    refuse(WireCodec.Drop.BAD_QPN, "destination QP " + p.destQpn() + " for a " + a.service()
                            + " packet" + (c == null ? ", no such QP" : ", a " + c.qp.type() + " QP"));
                    return null;
                }
                return a.service() != Opcode.Service.UD ? p.withSrcQpn(c.qp.attr().destQpNum()) : p;
            }
        }
    }

    /** Counts a packet dropped at reception for {@code why}. */
    void refuse(WireCodec.Drop drop, String why) {
        counters.drops.incrementAndGet(drop.ordinal());
        LOG.debug("{}: packet dropped, {}: {}", name, drop, why);
    }

    /** IBTA 10.9.3 P_Key matching ({@code pkey_match}): the same partition, one of them a full member. */
    static boolean pkeyMatch(int a, int b) {
        return (a & 0x7fff) != 0 && (a & 0x7fff) == (b & 0x7fff) && ((a | b) & 0x8000) != 0;
    }

    private static Opcode.Service serviceOf(QpType t) {
        return switch (t) {
            case UC -> Opcode.Service.UC;
            case UD -> Opcode.Service.UD;
            default -> Opcode.Service.RC;
        };
    }

    /** Releases the engine and runs what was queued meanwhile ({@link Scheduler#release}). */
    void release() {
        task.release();
    }

    // control, called from provider hooks

    QpCtx ctx(HwQp qp) {
        return qps.computeIfAbsent(qp.qpNum(), n -> new QpCtx(qp));
    }

    void destroy(HwQp qp) {
        lock.lock();
        try {
            qps.remove(qp.qpNum());
        } finally {
            release();
        }
    }

    /**
     * Runs {@code change} (the core's hook and commit of a modify_qp) with the engine held, so that no pass sees the
     * QP between them ({@code rxe_disable_task} around {@code rxe_qp_reset}); what was rung meanwhile runs after.
     */
    <T> T quiesce(Supplier<T> change) {
        lock.lock();
        try {
            return change.get();
        } finally {
            release();
        }
    }

    /** Test hook: runs at the end of {@link #modify}, after the engine took a transition, before the core commits it. */
    volatile Consumer<HwQp> modified;

    void modify(HwQp qp, QpAttr attr, QpState from, QpState to) {
        lock.lock();
        try {
            QpCtx c = ctx(qp);
            if (to == QpState.RESET || to == QpState.ERR) {
                c.reset();
            }
            if (attr.has(QpAttrMask.RQ_PSN)) {
                c.epsn = attr.rqPsn() & Packet.PSN_MASK;
            }
            if (attr.has(QpAttrMask.SQ_PSN)) {
                c.npsn = attr.sqPsn() & Packet.PSN_MASK;
            }
        } finally {
            release();
        }
        doorbell(qp);
        Consumer<HwQp> hook = modified;
        if (hook != null) {
            hook.accept(qp);
        }
    }

    /**
     * The send queue has work: the QP is queued for the requester and, if the engine is idle, the ringing thread
     * runs it now ({@code rxe_run_task}); otherwise the thread running it picks it up as it releases it.
     */
    void doorbell(HwQp qp) {
        if (!live()) {
            return; // a stopped or dead HCA rings nothing: the core flushes the queues as the device leaves
        }
        QpCtx c = ctx(qp);
        if (c.queued.compareAndSet(false, true)) {
            ready.add(c);
        }
        if (lock.isHeldByCurrentThread()) {
            return; // the pass this thread is in will see it
        }
        if (task.enterInline()) {
            try {
                if (live()) {
                    counters.inlinePasses++;
                    pass();
                }
            } finally {
                release();
            }
        }
        // else: whoever holds the engine runs it when it releases it (release())
    }

    /** The worker ended: if the HCA died, it reports that to the core ({@link #reportCrash}). */
    void workerEnded() {
        Throwable t = crash;
        if (t != null && task.running()) {
            reportCrash(t);
        }
    }

    /**
     * The worker, holding no lock and in no verb, hands a crash to the core: DEVICE_FATAL to every context, the
     * device disassociated as on hot unplug (every QP flushed, every region unpinned and unmapped). The worker then
     * ends: a dead HCA runs nothing.
     */
    private void reportCrash(Throwable t) {
        try {
            handle.fatal("softroce engine of " + name + ": " + t);
        } catch (RuntimeException e) {
            LOG.error("{}: disassociating the device after its fatal error failed", name, e);
        }
    }

    /**
     * Runs {@code work} on the engine (the caller holds it); an exception other than the defined errno and status
     * paths (which the requester, responder and completer turn into NAKs and completion statuses where they occur)
     * is a fatal device error ({@link #crash}). The leases kept for the round close either way.
     */
    private void guarded(Runnable work) {
        try {
            try {
                work.run();
            } finally {
                clearLeases();
            }
        } catch (RuntimeException | Error e) {
            crash(e);
        }
    }

    /**
     * A fatal device error, as a firmware crash: logged once with its stack, the engine's work dropped (nothing more
     * is sent or completed by it), and the worker woken to report it to the core. Called by the thread holding the
     * engine.
     */
    void crash(Throwable e) {
        Throwable first = crash;
        if (first != null) { // the HCA is dead already: what its unwinding met is kept with the first
            LOG.error("{}: unexpected exception in the HCA after its fatal error", name, e);
            first.addSuppressed(e);
            return;
        }
        crash = e;
        LOG.error("{}: unexpected exception in the HCA: fatal device error, the device is disassociated", name, e);
        inbox.clear();
        ready.clear();
        tx.clear();
        acks.clear();
        task.wake();
    }

    /**
     * Runs everything pending (packets, doorbells, due timers) until nothing is, handing what it sends to the
     * fabric; the caller holds the lock. Wakes the worker if a timer is due before it planned to wake.
     */
    void pass() {
        guarded(this::passRounds); // kept leases never outlive the pass: the next may run on another thread
    }

    private void passRounds() {
        boolean more = true;
        while (more && live()) {
            more = drainInbox();
            QpCtx c;
            while ((c = ready.poll()) != null) {
                more = true;
                c.queued.set(false);
                if (qps.get(c.qp.qpNum()) == c) {
                    requester.run(c);
                }
            }
            clearLeases(); // the round's packets go to the fabric, then its leases close
            if (!more) {
                boolean worker = task.inWorker();
                // the worker looks at every timer; a thread that runs the engine inline only in some passes
                // (Timers#inlineTurn), and otherwise wakes the worker for a timer it armed earlier than the worker
                // planned to look
                long next = worker || timers.inlineTurn() ? timers.fire(qps.values()) : 0;
                more = flushTx() || hasQueued();
                long armed = timers.takeArmed();
                if (worker) {
                    task.sleepUntil(next);
                } else {
                    task.wakeBy(next == 0 || (armed != 0 && armed - next < 0) ? armed : next);
                }
            }
        }
    }

    /**
     * Closes the leases kept for this round (a deregistration waits for them, so they are never kept long), after
     * handing the fabric the packets whose payload is a range of one.
     */
    void clearLeases() {
        try {
            flushTx();
        } finally {
            remoteLeases.clear();
            localLeases.clear();
        }
    }

    /** A remote access's lease, kept from an earlier access of this round or taken now (and kept if stable). */
    LeaseCache.Held remote(HwQp qp, int rkey, long va, long len, int access) {
        LeaseCache.Held h = remoteLeases.find(qp, rkey, access, va, len);
        return h != null ? h : remoteLeases.keep(handle.memory().remote(qp, rkey, va, len, access), qp, rkey, access, va,
                len);
    }

    /** A local read's lease, kept from an earlier access of this round or taken now (and kept if stable). */
    LeaseCache.Held local(HwQp qp, Sge sge) {
        LeaseCache.Held h = localLeases.find(qp.pd(), sge.lkey(), 0, sge.addr(), sge.length());
        if (h != null) {
            return h;
        }
        DmaLease l = handle.memory().local(qp.pd(), sge.lkey(), sge.addr(), sge.length(), 0);
        if (l.stable() && localLeases.full()) {
            flushTx(); // packets waiting may carry ranges of the leases about to be closed
        }
        return localLeases.keep(l, qp.pd(), sge.lkey(), 0, sge.addr(), sge.length());
    }

    /** Whether keeping one more local lease would first close those kept (see {@link #local}). */
    boolean localLeasesFull() {
        return localLeases.full();
    }

    /** Handles the stored packets; whether there were any. */
    private boolean drainInbox() {
        boolean any = false;
        Packet p;
        int budget = 4096;
        while (budget-- > 0 && (p = inbox.poll()) != null) {
            any = true;
            receiveOne(p);
        }
        if (any) {
            responder.flushAcks();
            completer.flushRetries();
        }
        return any;
    }

    private void receiveOne(Packet p) {
        counters.pktsRecv.setRelease(counters.pktsRecv.getPlain() + p.count());
        dispatch(p);
    }

    /** Hands the packets sent so far to the fabric (or drops them without carrier); whether there were any. */
    boolean flushTx() {
        if (tx.isEmpty()) {
            return false;
        }
        if (crash != null) {
            tx.clear(); // a dead HCA sends nothing
            return false;
        }
        ArrayList<Packet> out = tx;
        tx = txSpare;
        txSpare = out;
        try {
            if (carrier) {
                capture(out);
                transport.send(out);
            } else {
                transport.dropped(out.size());
            }
        } finally {
            out.clear();
        }
        return true;
    }

    /** Where the packets this HCA sends are captured ({@code rxe:pcap}), or null. */
    volatile PcapFile capture;

    /**
     * Writes {@code out} to the capture, if one is on, as the datagrams they are on the wire; an encoding that fails
     * stops the capture (logged with its stack), never the HCA.
     */
    private void capture(List<Packet> out) {
        PcapFile cap = capture;
        if (cap == null) {
            return;
        }
        try {
            for (Packet p : out) {
                WireCodec.encode(p, service(p), WireCodec.ROCE_PORT, (d, n) -> cap.ipv4(d, 0, n));
            }
        } catch (RuntimeException x) {
            LOG.error("{}: cannot capture a packet: the capture of this HCA stops", name, x);
            capture = null;
        }
    }

    /** The transport service of the QP that sent {@code p}: its opcodes are RC, UC or UD ones. */
    Opcode.Service service(Packet p) {
        if (p.op() == Packet.Op.UD_SEND || p.op() == Packet.Op.UD_SEND_IMM) {
            return Opcode.Service.UD;
        }
        QpCtx c = qps.get(p.srcQpn());
        return c != null && c.qp.type() == QpType.UC ? Opcode.Service.UC : Opcode.Service.RC;
    }

    /** The netdev's carrier came or went; going away counts in {@code link_downed}. */
    void carrier(boolean up) {
        if (!up && carrier) {
            counters.linkDowned++;
        }
        carrier = up;
    }

    private void dispatch(Packet p) {
        if (p.destQpn() == Gsi.QPN) {
            gsi.receive(p);
            return;
        }
        QpCtx c = qps.get(p.destQpn()); // the QPs created on this HCA and not destroyed
        if (c == null) {
            refuse(WireCodec.Drop.BAD_QPN, "destination QP " + p.destQpn() + ", no such QP"); // dropped as rxe does
            return;
        }
        HwQp qp = c.qp;
        QpState s = qp.state();
        if (p.op().isResponse()) {
            if (qp.type() == QpType.RC && (s == QpState.RTS || s == QpState.SQD)
                    && p.srcQpn() == qp.attr().destQpNum()) {
                completer.onResponse(c, p);
                requester.run(c);
            }
            return;
        }
        responder.onRequest(c, qp, p);
    }

    /**
     * Sends the packet {@code make} builds with the engine held (the GSI's sends, which come from the core's threads):
     * in the pass of the thread holding it, or in a pass of its own now. A stopped or dead HCA sends nothing.
     */
    void transmit(Supplier<Packet> make) {
        if (!live()) {
            return;
        }
        if (lock.isHeldByCurrentThread()) {
            send(make.get()); // the pass this thread is in hands it to the fabric
            return;
        }
        lock.lock();
        try {
            if (live()) {
                guarded(() -> send(make.get()));
            }
        } finally {
            release();
        }
    }

    void send(Packet p) {
        counters.pktsSent.setRelease(counters.pktsSent.getPlain() + p.count()); // only the thread running the engine writes it
        tx.add(p);
        if (tx.size() >= BURST) {
            flushTx();
        }
    }
}
