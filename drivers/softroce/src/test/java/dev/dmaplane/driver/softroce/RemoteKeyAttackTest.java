package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.Figures;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A hostile peer against the HCA's memory protection: seeded random RDMA WRITE, READ and atomic requests with valid,
 * mutated and foreign rkeys and lkeys, addresses at, past and around the region bounds (below the IOVA, past the
 * end, {@code iova + 2^63}, wrapping past 2^64), access rights the region lacks and regions of another PD. Each
 * request's outcome is predicted by the rules of IBTA 10.6.3 / rxe's {@code check_rkey} and {@code mr_check_range}
 * (C9-88: a zero-length RDMA READ or WRITE checks no rkey; a misaligned atomic is refused by {@code ibv_post_send},
 * rxe's {@code validate_send_wr}); legal requests are applied to a model of every byte of every buffer, and all
 * of both hosts' buffers are compared with the model every 256 requests and at the end, so that a single byte written
 * outside what legal requests wrote fails the run.
 *
 * <p>The number of requests is {@code -Ddmaplane.adversarial.attacks} (default 4000; the long run in
 * {@code docs/RELIABILITY.md} uses 150,000), the seed {@code -Ddmaplane.adversarial.seed}.
 */
@Tag("adversarial")
@Timeout(1800)
class RemoteKeyAttackTest extends HcaTestBase {
    private static final long KIB = 1024;
    private static final long VICTIM = 2L << 20;
    private static final int MAX_LEN = 64 * 1024;


    private enum Op { WRITE, READ, CMP_SWAP, FETCH_ADD }

    /** What a request does wrong (at most one thing at a time, so that the expected status is one). */
    private enum Attack {
        NONE, PAST_END, BELOW_IOVA, IOVA_PLUS_2_63, WRAPS_2_64, RANDOM_ADDRESS, KEY_BYTE, KEY_INDEX, RANDOM_KEY,
        MISSING_ACCESS, OTHER_PD, MISALIGNED_ATOMIC, LOCAL_BAD_LKEY, LOCAL_PAST_END, LOCAL_WRAP, LOCAL_READ_ONLY
    }

    /** A region the requests may name: its key, IOVA range, rights, whether it is in the QP's PD, and its bytes. */
    private record Region(String name, int key, long iova, long length, int access, boolean inQpPd, long addr,
                          Shadow shadow) {
        boolean contains(long va, long len) {
            return Long.compareUnsigned(va, iova) >= 0 && Long.compareUnsigned(len, length) <= 0
                    && Long.compareUnsigned(va - iova, length - len) <= 0;
        }

        @Override
        public String toString() {
            return name + " (key 0x" + Integer.toHexString(key) + ", iova 0x" + Long.toHexString(iova) + " +" + length + ")";
        }

        long offsetOf(long va) {
            return addr - shadow.base + (va - iova);
        }
    }

    /** The model of one mmapped buffer: what every byte must hold. */
    private static final class Shadow {
        final Hcas.Host host;
        final long base;
        final byte[] bytes;

        Shadow(Hcas.Host host, long base, int size, long seed) {
            this.host = host;
            this.base = base;
            this.bytes = Hcas.random(size, seed);
            host.mm.write(base, MemorySegment.ofArray(bytes));
        }

        long check() {
            byte[] now = new byte[bytes.length];
            host.mm.read(base, MemorySegment.ofArray(now));
            int i = Arrays.mismatch(bytes, now);
            if (i >= 0) {
                fail(host.dev + " buffer byte +0x" + Integer.toHexString(i) + " is " + now[i] + ", the model says "
                        + bytes[i] + ": a request changed memory no legal request wrote");
            }
            return bytes.length;
        }

        long longAt(long off) {
            return MemorySegment.ofArray(bytes).get(ValueLayout.JAVA_LONG_UNALIGNED, off);
        }

        void putLong(long off, long v) {
            MemorySegment.ofArray(bytes).set(ValueLayout.JAVA_LONG_UNALIGNED, off, v);
        }
    }

    /** One request as generated, with the status the rules predict. */
    private record Request(Op op, Attack attack, Region local, long localVa, int lkey, long len, Region remote,
                           long remoteVa, int rkey, long compare, long swapAdd, WcStatus expected) {
        @Override
        public String toString() {
            return op + " (" + attack + ") of " + len + " bytes from 0x" + Long.toHexString(localVa) + " lkey 0x"
                    + Integer.toHexString(lkey) + " to 0x" + Long.toHexString(remoteVa) + " rkey 0x"
                    + Integer.toHexString(rkey) + " [local " + local + ", remote " + remote + "]";
        }
    }

    @Test
    void randomKeyAddressLengthAndPdAttacksChangeNoByteOutsideLegalRequests() {
        int attacks = Integer.getInteger("dmaplane.adversarial.attacks", 4000);
        long seed = Long.getLong("dmaplane.adversarial.seed", 0x5EC_17L);
        SplittableRandom rnd = new SplittableRandom(seed);

        Shadow attacker = new Shadow(h.a, h.a.buf, (int) Hcas.BUF, seed + 1);
        Shadow bBuf = new Shadow(h.b, h.b.buf, (int) Hcas.BUF, seed + 2);
        long vbuf = h.b.mm.mmapAnonymous(VICTIM, Prot.PROT_READ | Prot.PROT_WRITE);
        Shadow victim = new Shadow(h.b, vbuf, (int) VICTIM, seed + 3);
        ProtectionDomain otherPd = h.b.ctx.allocPd();

        List<Region> remotes = new ArrayList<>();
        remotes.add(region("b.mr", h.b.mr, true, bBuf));
        remotes.add(region("iova-shifted", h.b.pd.regMr(vbuf, 512 * KIB, 0x1000_0000_0000L, Hcas.ALL), true, victim));
        remotes.add(region("read-only", h.b.pd.regMr(vbuf + 516 * KIB, 252 * KIB, Access.REMOTE_READ), true, victim));
        remotes.add(region("write-only", h.b.pd.regMr(vbuf + 768 * KIB, 256 * KIB,
                Access.LOCAL_WRITE | Access.REMOTE_WRITE), true, victim));
        remotes.add(region("other-pd", otherPd.regMr(vbuf + 1024 * KIB, 256 * KIB, Hcas.ALL), false, victim));
        remotes.add(region("on-demand", h.b.pd.regMr(vbuf + 1280 * KIB, 764 * KIB, Hcas.ALL | Access.ON_DEMAND),
                true, victim));
        // vbuf [512K, 516K) and its last page belong to no region: only the comparison with the model guards them

        Region local = region("a.mr", h.a.mr, true, attacker);
        Region localReadOnly = region("a.ro", h.a.pd.regMr(h.a.buf + (2L << 20), 64 * KIB, 0), true, attacker);

        Map<WcStatus, Integer> outcomes = new EnumMap<>(WcStatus.class);
        Map<Attack, Integer> kinds = new EnumMap<>(Attack.class);
        long legalBytes = 0;
        int refusedAtPost = 0;
        long checkedBytes = 0;
        QueuePair[] qp = h.pair();
        for (int i = 0; i < attacks; i++) {
            Request r = generate(rnd, remotes, local, localReadOnly);
            QueuePair qpNow = qp[0];
            long id = i;
            kinds.merge(r.attack(), 1, Integer::sum);
            if (r.expected() == null) {
                PostException e = assertThrows(PostException.class, () -> qpNow.postSend(wr(id, r)), r::toString);
                assertEquals(Errno.EINVAL, e.errno(), r.toString());
                refusedAtPost++;
                continue;
            }
            qp[0].postSend(wr(i, r));
            WorkCompletion wc = Hcas.one(h.a.cq);
            outcomes.merge(wc.status(), 1, Integer::sum);
            if (wc.status() != r.expected()) {
                fail("request " + i + " (seed " + seed + ") " + r + " completed " + wc.status() + ", the rules say "
                        + r.expected());
            }
            if (wc.status() == WcStatus.SUCCESS) {
                legalBytes += apply(r, true);
            } else {
                if (r.op() == Op.CMP_SWAP || r.op() == Op.FETCH_ADD) {
                    apply(r, false); // LOC_PROT_ERR: the responder ran the atomic, only its result was not stored
                }
                qp[0].destroy();
                qp[1].destroy();
                qp = h.pair();
            }
            if (i % 256 == 255) {
                checkedBytes += attacker.check() + bBuf.check() + victim.check();
            }
        }
        checkedBytes += attacker.check() + bBuf.check() + victim.check();
        Figures.report("RemoteKeyAttackTest", String.format("%d attack requests (seed %d): %s by kind; %d refused by "
                + "ibv_post_send, completions %s; 0 accepted out of range; %d bytes moved by legal requests, %d bytes "
                + "compared with the model, 0 changed outside", attacks, seed, kinds, refusedAtPost, outcomes,
                legalBytes, checkedBytes));
    }

    private static Region region(String name, MemoryRegion mr, boolean inQpPd, Shadow shadow) {
        return new Region(name, mr.rkey(), mr.iova(), mr.length(), mr.access(), inQpPd, mr.addr(), shadow);
    }

    private static Request generate(SplittableRandom rnd, List<Region> remotes, Region local, Region localReadOnly) {
        Op op = Op.values()[rnd.nextInt(Op.values().length)];
        boolean atomic = op == Op.CMP_SWAP || op == Op.FETCH_ADD;
        long len = atomic ? 8 : switch (rnd.nextInt(6)) {
            case 0 -> 0;
            case 1 -> 1;
            case 2 -> 8;
            case 3 -> 4096;
            default -> 1 + rnd.nextInt(MAX_LEN);
        };
        List<Region> usable = remotes.stream().filter(g -> g.inQpPd() && (g.access() & need(op)) != 0
                && g.length() >= len).toList();
        Region remote = usable.get(rnd.nextInt(usable.size()));
        long remoteVa = remote.iova() + inside(rnd, remote.length(), len, atomic);
        int rkey = remote.key();
        long localOff = inside(rnd, 2L << 20, len, false); // in the first 2 MiB of a.buf, below a.ro
        Region loc = local;
        long localVa = local.iova() + localOff;
        int lkey = local.key();

        Attack attack = rnd.nextInt(3) == 0 ? Attack.NONE : Attack.values()[1 + rnd.nextInt(Attack.values().length - 1)];
        switch (attack) {
            case PAST_END -> {
                if (len > 0) {
                    remoteVa = remote.iova() + remote.length() - len + 1 + rnd.nextLong(len);
                }
            }
            case BELOW_IOVA -> remoteVa = remote.iova() - 1 - rnd.nextLong(8192);
            case IOVA_PLUS_2_63 -> remoteVa ^= Long.MIN_VALUE;
            case WRAPS_2_64 -> {
                if (len > 1) {
                    remoteVa = -1 - rnd.nextLong(len - 1);
                }
            }
            case RANDOM_ADDRESS -> remoteVa = rnd.nextLong();
            case KEY_BYTE -> rkey ^= 1 + rnd.nextInt(255);
            case KEY_INDEX -> rkey ^= 1 << (8 + rnd.nextInt(20));
            case RANDOM_KEY -> rkey = rnd.nextInt();
            case MISSING_ACCESS -> {
                List<Region> lacking = remotes.stream().filter(g -> g.inQpPd() && (g.access() & need(op)) == 0).toList();
                remote = lacking.get(rnd.nextInt(lacking.size()));
                remoteVa = remote.iova() + inside(rnd, remote.length(), len, atomic);
                rkey = remote.key();
            }
            case OTHER_PD -> {
                remote = remotes.stream().filter(g -> !g.inQpPd()).findFirst().orElseThrow();
                remoteVa = remote.iova() + inside(rnd, remote.length(), len, atomic);
                rkey = remote.key();
            }
            case MISALIGNED_ATOMIC -> {
                if (atomic) {
                    remoteVa += 1 + rnd.nextInt(7);
                    if (!remote.contains(remoteVa, 8)) {
                        remoteVa -= 8;
                    }
                }
            }
            case LOCAL_BAD_LKEY -> lkey ^= 1 + rnd.nextInt(255);
            case LOCAL_PAST_END -> {
                if (len > 0) {
                    localVa = local.iova() + local.length() - len + 1 + rnd.nextLong(len);
                }
            }
            case LOCAL_WRAP -> localVa ^= Long.MIN_VALUE;
            case LOCAL_READ_ONLY -> {
                loc = localReadOnly;
                localVa = loc.iova() + inside(rnd, loc.length(), Math.min(len, loc.length()), false);
                lkey = loc.key();
                if (len > loc.length()) {
                    attack = Attack.NONE; // a read-only local region of 64 KiB holds no longer message: no attack
                    loc = local;
                    localVa = local.iova() + localOff;
                    lkey = local.key();
                }
            }
            case NONE -> {
            }
        }
        Region target = byKey(remotes, rkey);
        Region source = byKey(List.of(local, localReadOnly), lkey);
        WcStatus expected = expect(op, len, target, remoteVa, source, localVa);
        Region dst = target == null ? remote : target;
        long compare = op == Op.CMP_SWAP && rnd.nextBoolean() && dst.contains(remoteVa, 8)
                ? dst.shadow().longAt(dst.offsetOf(remoteVa)) : rnd.nextLong(); // half the swaps find their value
        return new Request(op, attack, source == null ? loc : source, localVa, lkey, len, dst, remoteVa, rkey, compare,
                rnd.nextLong(), expected);
    }

    /** A random offset at which {@code len} bytes fit in {@code length} (8-aligned for atomics). */
    private static long inside(SplittableRandom rnd, long length, long len, boolean atomic) {
        long off = rnd.nextLong(length - len + 1);
        return atomic ? off & ~7L : off;
    }

    private static int need(Op op) {
        return switch (op) {
            case WRITE -> Access.REMOTE_WRITE;
            case READ -> Access.REMOTE_READ;
            case CMP_SWAP, FETCH_ADD -> Access.REMOTE_ATOMIC;
        };
    }

    private static Region byKey(List<Region> regions, int key) {
        return regions.stream().filter(g -> g.key() == key).findFirst().orElse(null);
    }

    /**
     * The status the rules give. A WRITE's source is read before anything is sent (rxe's requester: LOC_PROT_ERR);
     * a READ's or an atomic's destination is written when the response arrives, so the responder's checks come
     * first; {@code null} stands for EINVAL from {@code ibv_post_send}, which refuses a misaligned atomic (rxe's
     * {@code validate_send_wr}) before anything is sent. The responder: a zero-length READ
     * or WRITE checks no key and no address (C9-88); otherwise the rkey must name a region of the QP's PD with the
     * right and the range must lie inside it.
     */
    private static WcStatus expect(Op op, long len, Region target, long remoteVa, Region source, long localVa) {
        boolean atomic = op == Op.CMP_SWAP || op == Op.FETCH_ADD;
        boolean localOk = len == 0 || source != null && source.contains(localVa, len)
                && (op == Op.WRITE || (source.access() & Access.LOCAL_WRITE) != 0);
        if (op == Op.WRITE && !localOk) {
            return WcStatus.LOC_PROT_ERR;
        }
        if (atomic && (remoteVa & 7) != 0) {
            return null; // rxe's validate_send_wr: a misaligned atomic is EINVAL at ibv_post_send
        }
        boolean remoteOk = len == 0 && !atomic || target != null && target.inQpPd()
                && (target.access() & need(op)) != 0 && target.contains(remoteVa, len);
        if (!remoteOk) {
            return WcStatus.REM_ACCESS_ERR;
        }
        return localOk ? WcStatus.SUCCESS : WcStatus.LOC_PROT_ERR;
    }

    private static SendWr wr(long id, Request r) {
        List<Sge> sgl = List.of(new Sge(r.localVa(), r.len(), r.lkey()));
        return switch (r.op()) {
            case WRITE -> new SendWr.RdmaWrite(id, sgl, SIGNALED, r.remoteVa(), r.rkey());
            case READ -> new SendWr.RdmaRead(id, sgl, SIGNALED, r.remoteVa(), r.rkey());
            case CMP_SWAP -> new SendWr.AtomicCmpAndSwp(id, sgl, SIGNALED, r.remoteVa(), r.rkey(), r.compare(), r.swapAdd());
            case FETCH_ADD -> new SendWr.AtomicFetchAndAdd(id, sgl, SIGNALED, r.remoteVa(), r.rkey(), r.swapAdd());
        };
    }

    /**
     * Applies a request to the model; returns the bytes it moved. An atomic whose local SGE is refused still ran at
     * the responder: rxe's completer stores the original value into the SGE only when the response arrives
     * ({@code rxe_comp.c}, {@code do_atomic}), so {@code local} false applies the remote side alone.
     */
    private static long apply(Request r, boolean local) {
        if (r.len() == 0 || r.expected() != WcStatus.SUCCESS && r.expected() != WcStatus.LOC_PROT_ERR) {
            return 0;
        }
        Region src = r.local();
        Region dst = r.remote();
        int lo = local ? (int) src.offsetOf(r.localVa()) : 0;
        int ro = (int) dst.offsetOf(r.remoteVa());
        switch (r.op()) {
            case WRITE -> System.arraycopy(src.shadow().bytes, lo, dst.shadow().bytes, ro, (int) r.len());
            case READ -> System.arraycopy(dst.shadow().bytes, ro, src.shadow().bytes, lo, (int) r.len());
            case CMP_SWAP, FETCH_ADD -> {
                long old = dst.shadow().longAt(ro);
                long now = r.op() == Op.FETCH_ADD ? old + r.swapAdd() : old == r.compare() ? r.swapAdd() : old;
                dst.shadow().putLong(ro, now);
                if (local) {
                    src.shadow().putLong(lo, old);
                }
            }
        }
        return r.len();
    }
}
