package dev.dmaplane.driver.softroce;

import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.ReregFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.rdma.verbs.WorkRequest;
import dev.dmaplane.testing.Figures;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.ReadWriteLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Random verbs call sequences from two threads over shared objects on both HCAs: regions registered, re-registered
 * and deregistered while others post through them, QPs connected, drained (SQD), resumed, errored and destroyed while
 * the other thread posts to them, receives and sends of every opcode. The verbs may refuse a call with an errno
 * (libibverbs' return codes: EBUSY, EINVAL, ...) or complete a work request with an error status; anything else a
 * call throws is a finding. Every posted work request must complete exactly once (IBTA 10.8.3: a QP in the Error
 * state flushes what is outstanding; {@code ibv_post_send(3)} in the Error state completes with a flush), a watchdog
 * fails the run if a thread makes no progress for 20 s, and once every context is closed nothing is pinned or
 * mapped and dma-debug has nothing to report.
 *
 * <p>Steps per thread: {@code -Ddmaplane.adversarial.verbs} (default 3000; the long run uses 100,000 for 200,000
 * steps in all), seed {@code -Ddmaplane.adversarial.seed}.
 */
@Tag("adversarial")
@Timeout(1800)
class VerbsSequenceTest {
    private static final long ARENA = 8L << 20;
    private static final int MAX_PAIRS = 12;
    private static final QpCap CAP = new QpCap(32, 32, 2, 2, 0);

    private enum Step { REG_MR, DEREG_MR, REREG_MR, CREATE_PAIR, MODIFY, POST_SEND, POST_RECV, POLL, RETIRE }

    /** One side's objects: an arena of memory, its regions, a spare PD. */
    private record Side(Hcas.Host host, long arena, ProtectionDomain spare, List<MemoryRegion> mrs) {
    }

    /**
     * A connected pair, the work each of its QPs has outstanding, and the lock that keeps posts (read) out while the
     * pair is destroyed (write): ibv_destroy_qp discards what it still holds, so only drained QPs are destroyed.
     */
    private record Pair(QueuePair[] qp, Side[] side, AtomicInteger[] outstanding, ReadWriteLock life) {
        Pair(QueuePair[] qp, Side[] side) {
            this(qp, side, new AtomicInteger[] {new AtomicInteger(), new AtomicInteger()}, new ReentrantReadWriteLock());
        }
    }

    private final Hcas h = new Hcas();
    private final List<Pair> pairs = new CopyOnWriteArrayList<>();
    private final Map<Long, Integer> completed = new ConcurrentHashMap<>();
    private final Map<Long, String> posted = new ConcurrentHashMap<>();
    private final Map<Long, AtomicInteger> owner = new ConcurrentHashMap<>();
    private final AtomicLong ids = new AtomicLong();
    private final Map<String, AtomicLong> refused = new ConcurrentHashMap<>();
    private final AtomicReference<Throwable> finding = new AtomicReference<>();
    private final Thread[] workers = new Thread[2];

    @Test
    void twoThreadsOfRandomVerbsLoseNoCompletionAndLeaveNothingBehind() throws Exception {
        int steps = Integer.getInteger("dmaplane.adversarial.verbs", 3000);
        long seed = Long.getLong("dmaplane.adversarial.seed", 0x5EC_17L);
        Side[] sides = {side(h.a), side(h.b)};
        AtomicLong[] progress = {new AtomicLong(), new AtomicLong()};
        for (int t = 0; t < 2; t++) {
            int me = t;
            workers[t] = new Thread(() -> run(new SplittableRandom(seed + me), steps, sides, progress[me]), "verbs-" + t);
            workers[t].start();
        }
        watch(workers, progress);
        assertFinding();

        for (Pair p : List.copyOf(pairs)) {
            pairs.remove(p);
            retire(p);
        }
        drainAll(sides);
        checkExactlyOnce();
        long refusals = refused.values().stream().mapToLong(AtomicLong::get).sum();
        h.a.ctx.close();
        h.b.ctx.close();
        assertEquals(0, h.machine.memory().pinsOutstanding(), "pinned pages after every context closed");
        h.machine.devices().unregisterDriver(h.driver); // the driver's own queues are mapped while it is bound
        assertEquals(0, h.machine.activeDmaMappings(), "DMA mappings after every context closed and the unbind");
        List<DmaDebugReport> reports = h.machine.dmaDebug().reports();
        assertTrue(reports.isEmpty(), "dma-debug: " + reports);
        Figures.report("VerbsSequenceTest", String.format("%d random verbs steps from two threads (seed %d): %d work "
                + "requests, each completed once; %d calls refused with an errno %s; 0 unexpected exceptions; nothing "
                + "pinned or mapped after close", 2 * steps, seed, posted.size(), refusals, new TreeMap<>(refused)));
    }

    @AfterEach
    void close() throws InterruptedException {
        finding.compareAndSet(null, new AssertionError("the test ended")); // stops workers a failure left running
        for (Thread w : workers) {
            if (w != null) {
                w.join(10_000);
            }
        }
        h.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    private Side side(Hcas.Host host) {
        long arena = host.mm.mmapAnonymous(ARENA, Prot.PROT_READ | Prot.PROT_WRITE);
        return new Side(host, arena, host.ctx.allocPd(), new CopyOnWriteArrayList<>());
    }

    /** Joins the workers; fails with their stacks if one makes no progress for 20 s. */
    private void watch(Thread[] workers, AtomicLong[] progress) throws InterruptedException {
        long[] last = new long[workers.length];
        long[] since = new long[workers.length];
        Arrays.fill(since, System.nanoTime());
        for (int t = 0; t < workers.length; t++) {
            while (workers[t].isAlive()) {
                workers[t].join(500);
                for (int k = 0; k < workers.length; k++) {
                    long now = progress[k].get();
                    if (now != last[k]) {
                        last[k] = now;
                        since[k] = System.nanoTime();
                    } else if (workers[k].isAlive() && System.nanoTime() - since[k] > 20_000_000_000L) {
                        StringBuilder stacks = new StringBuilder();
                        for (Thread w : workers) {
                            stacks.append(w.getName()).append(":\n");
                            Arrays.stream(w.getStackTrace()).forEach(e -> stacks.append("    ").append(e).append('\n'));
                        }
                        fail("watchdog: " + workers[k].getName() + " made no progress for 20 s after step " + now
                                + "\n" + stacks);
                    }
                }
            }
        }
    }

    private void run(SplittableRandom rnd, int steps, Side[] sides, AtomicLong progress) {
        try {
            for (int i = 0; i < steps && finding.get() == null; i++) {
                Step step = Step.values()[rnd.nextInt(Step.values().length)];
                try {
                    step(rnd, step, sides);
                } catch (ErrnoException e) {
                    refused.computeIfAbsent(step + " " + e.errno(), k -> new AtomicLong()).incrementAndGet();
                }
                progress.incrementAndGet();
            }
        } catch (Throwable t) {
            finding.compareAndSet(null, t);
        }
    }

    private void step(SplittableRandom rnd, Step step, Side[] sides) {
        Side s = sides[rnd.nextInt(2)];
        switch (step) {
            case REG_MR -> {
                if (s.mrs().size() < 16) {
                    long len = 4096L * (1 + rnd.nextInt(64));
                    long off = 4096L * rnd.nextInt((int) ((ARENA - len) / 4096));
                    int access = rnd.nextInt(4) == 0 ? Hcas.ALL | Access.ON_DEMAND : Hcas.ALL;
                    s.mrs().add(s.host().pd.regMr(s.arena() + off, len, access));
                }
            }
            case DEREG_MR -> {
                MemoryRegion mr = any(rnd, s.mrs());
                if (mr != null) {
                    s.mrs().remove(mr);
                    mr.destroy();
                }
            }
            case REREG_MR -> {
                MemoryRegion mr = any(rnd, s.mrs());
                if (mr != null) {
                    long len = 4096L * (1 + rnd.nextInt(64));
                    long off = 4096L * rnd.nextInt((int) ((ARENA - len) / 4096));
                    int flags = 1 + rnd.nextInt(ReregFlags.ALL);
                    ProtectionDomain pd = rnd.nextBoolean() ? s.spare() : s.host().pd;
                    int access = rnd.nextBoolean() ? Hcas.ALL : Access.LOCAL_WRITE;
                    mr.rereg(flags, pd, s.arena() + off, len, (flags & ReregFlags.CHANGE_ACCESS) != 0 ? access : 0);
                }
            }
            case CREATE_PAIR -> {
                if (pairs.size() < MAX_PAIRS) {
                    QueuePair qa = qp(sides[0]);
                    QueuePair qb = qp(sides[1]);
                    Hcas.connect(qa, qb, h.b.gid, Hcas.ALL, 1, 1);
                    Hcas.connect(qb, qa, h.a.gid, Hcas.ALL, 1, 1);
                    pairs.add(new Pair(new QueuePair[] {qa, qb}, sides));
                }
            }
            case MODIFY -> {
                Pair p = any(rnd, pairs);
                if (p != null) {
                    QpState to = switch (rnd.nextInt(5)) {
                        case 0 -> QpState.SQD;
                        case 1, 2 -> QpState.RTS;
                        case 3 -> QpState.ERR;
                        default -> QpState.INIT; // from RTS/SQD/ERR: EINVAL (ib_modify_qp_is_ok)
                    };
                    p.qp()[rnd.nextInt(2)].modify(QpAttr.builder().state(to).build());
                }
            }
            case POST_SEND -> {
                Pair p = any(rnd, pairs);
                if (p != null) {
                    int from = rnd.nextInt(2);
                    List<SendWr> wrs = new ArrayList<>();
                    for (int n = 1 + rnd.nextInt(4); n > 0; n--) {
                        wrs.add(sendWr(rnd, p.side()[from], p.side()[1 - from]));
                    }
                    post(p, from, wrs.stream().map(w -> (WorkRequest) w).toList(), () -> p.qp()[from].postSend(wrs));
                }
            }
            case POST_RECV -> {
                Pair p = any(rnd, pairs);
                if (p != null) {
                    int at = rnd.nextInt(2);
                    RecvWr wr = RecvWr.of(ids.incrementAndGet(), sge(rnd, p.side()[at], 4096));
                    post(p, at, List.of(wr), () -> p.qp()[at].postRecv(wr));
                }
            }
            case POLL -> poll(s);
            case RETIRE -> {
                Pair p = any(rnd, pairs);
                if (p != null && pairs.remove(p)) {
                    retire(p);
                }
            }
        }
    }

    private QueuePair qp(Side s) {
        return s.host().pd.createQp(new QpInitAttr(s.host().cq, s.host().cq, null, CAP, QpType.RC, false));
    }

    private static <T> T any(SplittableRandom rnd, List<T> list) {
        int n = list.size(); // once: the other thread may empty the list between two reads
        if (n == 0) {
            return null;
        }
        try {
            return list.get(rnd.nextInt(n));
        } catch (IndexOutOfBoundsException raced) {
            return null; // the other thread removed one meanwhile
        }
    }

    /**
     * An SGE inside one of the side's regions, as far as this thread knows: the other thread may re-register or
     * deregister it meanwhile (a destroyed region reports length 0), which the verbs must then refuse.
     */
    private Sge sge(SplittableRandom rnd, Side s, long max) {
        MemoryRegion mr = any(rnd, s.mrs());
        long length = mr == null ? 0 : mr.length();
        if (length < 8) {
            return new Sge(s.host().buf, Math.min(max, 4096), s.host().mr.lkey());
        }
        long len = Math.min(length, 1 + rnd.nextLong(max));
        return new Sge(mr.iova() + rnd.nextLong(length - len + 1), len, mr.lkey());
    }

    private SendWr sendWr(SplittableRandom rnd, Side local, Side remote) {
        long id = ids.incrementAndGet();
        MemoryRegion target = any(rnd, remote.mrs());
        long length = target == null ? 0 : target.length();
        long raddr = length < 8 ? remote.host().buf : target.iova() + 8 * rnd.nextLong(length / 8);
        int rkey = length < 8 ? remote.host().mr.rkey() : target.rkey();
        return switch (rnd.nextInt(5)) {
            case 0 -> new SendWr.Send(id, List.of(sge(rnd, local, 4096)), SIGNALED, null);
            case 1 -> new SendWr.RdmaWrite(id, List.of(sge(rnd, local, 8192)), SIGNALED, raddr, rkey);
            case 2 -> new SendWr.RdmaRead(id, List.of(sge(rnd, local, 8192)), SIGNALED, raddr, rkey);
            case 3 -> new SendWr.AtomicFetchAndAdd(id, List.of(atomicSge(rnd, local)), SIGNALED, raddr, rkey, 1);
            default -> new SendWr.AtomicCmpAndSwp(id, List.of(atomicSge(rnd, local)), SIGNALED, raddr, rkey, 0, 1);
        };
    }

    private Sge atomicSge(SplittableRandom rnd, Side s) {
        Sge any = sge(rnd, s, 8);
        return new Sge(any.addr() & ~7L, 8, any.lkey());
    }

    /**
     * Records and posts work requests on side {@code at} of a pair still alive; on a refusal only the ones before
     * the bad one were posted ({@code bad_wr}).
     */
    private void post(Pair p, int at, List<WorkRequest> wrs, Runnable call) {
        if (!p.life().readLock().tryLock()) {
            return; // being destroyed
        }
        try {
            if (!pairs.contains(p)) {
                return;
            }
            for (WorkRequest wr : wrs) {
                posted.put(wr.wrId(), wr + " on qp " + p.qp()[at].qpNum());
                owner.put(wr.wrId(), p.outstanding()[at]);
                p.outstanding()[at].incrementAndGet();
            }
            try {
                call.run();
            } catch (ErrnoException e) {
                int from = e instanceof PostException pe ? pe.badIndex() : 0;
                for (WorkRequest wr : wrs.subList(from, wrs.size())) {
                    posted.remove(wr.wrId());
                    owner.remove(wr.wrId()).decrementAndGet();
                }
                throw e;
            }
        } finally {
            p.life().readLock().unlock();
        }
    }

    private void poll(Side s) {
        for (WorkCompletion wc : s.host().cq.poll(64)) {
            Integer times = completed.merge(wc.wrId(), 1, Integer::sum);
            if (times > 1) {
                throw new AssertionError("wr_id " + wc.wrId() + " (" + posted.get(wc.wrId()) + ") completed twice: " + wc);
            }
            AtomicInteger left = owner.remove(wc.wrId());
            if (left == null) {
                throw new AssertionError("a completion for wr_id " + wc.wrId() + ", which was never posted: " + wc);
            }
            left.decrementAndGet();
        }
    }

    /**
     * ERR flushes what is outstanding; the QPs are destroyed once each of their work requests came back. Moving a QP
     * to ERR and destroying it are valid from every state (ib_modify_qp_is_ok), so an errno here is a finding too.
     */
    private void retire(Pair p) {
        p.life().writeLock().lock();
        try {
            for (QueuePair qp : p.qp()) {
                qp.modify(QpAttr.builder().state(QpState.ERR).build());
            }
            for (int i = 0; i < 2; i++) {
                long deadline = System.nanoTime() + 10_000_000_000L;
                while (p.outstanding()[i].get() > 0) {
                    if (System.nanoTime() - deadline > 0) {
                        throw new AssertionError("qp " + p.qp()[i].qpNum() + " in ERR never flushed its "
                                + p.outstanding()[i].get() + " outstanding work request(s)");
                    }
                    poll(p.side()[i]);
                }
            }
            for (QueuePair qp : p.qp()) {
                qp.destroy();
            }
        } catch (ErrnoException e) {
            throw new AssertionError("retiring qps " + p.qp()[0].qpNum() + " and " + p.qp()[1].qpNum() + ": " + e, e);
        } finally {
            p.life().writeLock().unlock();
        }
    }

    private void drainAll(Side[] sides) {
        for (Side s : sides) {
            poll(s);
        }
    }

    private void checkExactlyOnce() {
        for (Map.Entry<Long, String> e : posted.entrySet()) {
            Integer n = completed.get(e.getKey());
            if (n == null || n != 1) {
                fail("wr_id " + e.getKey() + " (" + e.getValue() + ") completed " + (n == null ? 0 : n) + " times");
            }
        }
        assertEquals(posted.keySet(), completed.keySet(), "completions for work requests never posted");
    }

    private void assertFinding() {
        Throwable t = finding.get();
        if (t != null) {
            throw new AssertionError("a verbs call threw something other than an errno: " + t, t);
        }
    }
}
