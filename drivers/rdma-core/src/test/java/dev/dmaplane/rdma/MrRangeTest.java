package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwPd;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.MemoryWindow;
import dev.dmaplane.rdma.verbs.MwBindInfo;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;
import java.util.Random;
import java.util.function.Supplier;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The range check of every keyed access, as rdma_rxe's {@code mr_check_range} ({@code rxe_mr.c}) makes it with
 * {@code u64 iova} and {@code size_t length} (the form of the CVE-2016-8636 fix: {@code iova < mr->iova ||
 * length > mr->length || iova > mr->iova + mr->length - length}), plus the access's own end not wrapping past
 * 2^64: lkeys of local SGEs, rkeys of RDMA WRITE, READ and atomics, and the window bind check of
 * {@code rxe_check_bind_mw} (C10-75). An address {@code iova + 2^63 + k} must not wrap back to offset {@code k}.
 */
@Timeout(60)
class MrRangeTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private static final long TOP = 1L << 63;
    private static final int LEN = 16 * (int) PAGE;

    private final Fixture f = new Fixture();
    private final VerbsContext ctx = f.open();
    private final ProtectionDomain pd = ctx.allocPd();
    private final CompletionQueue cq = ctx.createCq(64, null, 0);
    private final long buf = f.alloc(LEN + 2 * PAGE) + PAGE; // a page of other memory on each side
    private final long src = f.alloc(4 * PAGE);
    private final MemoryRegion srcMr = pd.regMr(src, 4 * PAGE, Fixture.ALL_REMOTE);
    private final MemoryAccess mem = f.provider().handle().memory();

    @AfterEach
    void close() {
        f.close();
    }

    private byte[] fill() {
        byte[] pattern = new byte[LEN + 2 * (int) PAGE];
        new Random(17).nextBytes(pattern);
        f.write(buf - PAGE, pattern);
        return pattern;
    }

    /** The accesses that must be refused for a region at {@code iova} of {@link #LEN} bytes: {address, length}. */
    private static long[][] outside(long iova) {
        return new long[][]{
                {iova + TOP + 0x2000, PAGE},        // the attack: low bits land at offset 0x2000
                {iova + TOP, 1},
                {iova ^ TOP, 8},
                {iova - 1, 1},
                {iova - 1, 2},                      // straddles the start
                {iova + LEN - 8, 16},               // straddles the end
                {iova + LEN, 1},
                {-PAGE, 2 * PAGE},                  // address + length wraps past 2^64
                {-8, 8},
                {iova, LEN + 1L},
        };
    }

    /** The refusal of {@code access}; a lease it grants by mistake is closed (its lock released) before failing. */
    private static AccessFault refused(Supplier<DmaLease> access, String what) {
        DmaLease granted;
        try {
            granted = access.get();
        } catch (AccessFault e) {
            return e;
        }
        granted.close();
        return fail(what + ": granted a lease of " + granted.length() + " bytes at " + granted.segments());
    }

    @Test
    void lkeysRefuseWrappedAndOutsideRangesWithLocProtErr() {
        MemoryRegion mr = pd.regMr(buf, LEN, Access.LOCAL_WRITE);
        for (long[] k : outside(buf)) {
            AccessFault e = refused(() -> mem.local((HwPd) pd, mr.lkey(), k[0], k[1], 0),
                    "lkey 0x" + Long.toHexString(k[0]) + "+" + k[1]);
            assertEquals(WcStatus.LOC_PROT_ERR, e.status());
            assertEquals(Errno.EFAULT, e.errno(), e.getMessage());
        }
        try (DmaLease first = mem.local((HwPd) pd, mr.lkey(), buf, 1, 0);
             DmaLease all = mem.local((HwPd) pd, mr.lkey(), buf, LEN, 0)) {
            assertEquals(1, first.length());
            assertEquals(LEN, all.length());
        }
        mem.local((HwPd) pd, mr.lkey(), buf + LEN - 1, 1, Access.LOCAL_WRITE).close();
    }

    @Test
    void rkeysRefuseWrappedAndOutsideRangesWithRemAccessErr() {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        MemoryRegion mr = pd.regMr(buf, LEN, Fixture.ALL_REMOTE);
        for (int access : new int[]{Access.REMOTE_READ, Access.REMOTE_WRITE, Access.REMOTE_ATOMIC}) {
            for (long[] k : outside(buf)) {
                AccessFault e = refused(() -> mem.remote((HwQp) p[1], mr.rkey(), k[0], k[1], access),
                        Access.toString(access) + " 0x" + Long.toHexString(k[0]) + "+" + k[1]);
                assertEquals(WcStatus.REM_ACCESS_ERR, e.status());
                assertEquals(Errno.EFAULT, e.errno(), e.getMessage());
            }
        }
        mem.remote((HwQp) p[1], mr.rkey(), buf + LEN - 8, 8, Access.REMOTE_ATOMIC).close();
    }

    @Test
    void aRegionAtAnIovaAboveTwoToThe63IsCheckedUnsignedToo() {
        long iova = 0xFFFF_FFFF_FFF0_0000L;
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        MemoryRegion mr = pd.regMr(buf, LEN, iova, Fixture.ALL_REMOTE);
        for (long[] k : outside(iova)) {
            assertEquals(WcStatus.REM_ACCESS_ERR, refused(() -> mem.remote((HwQp) p[1], mr.rkey(), k[0], k[1],
                    Access.REMOTE_WRITE), "0x" + Long.toHexString(k[0]) + "+" + k[1]).status());
        }
        try (DmaLease l = mem.remote((HwQp) p[1], mr.rkey(), iova + LEN - PAGE, PAGE, Access.REMOTE_READ)) {
            assertEquals(PAGE, l.length());
        }
    }

    @Test
    void theWrappedRdmaWriteReadAndAtomicFailAndNoByteChanges() {
        MemoryRegion mr = pd.regMr(buf, LEN, Fixture.ALL_REMOTE);
        byte[] before = fill();
        long attack = (buf + 0x2000) ^ TOP;

        QueuePair[] w = Fixture.pair(pd, cq, QpType.RC, 8);
        w[0].postSend(new SendWr.RdmaWrite(1, List.of(new Sge(src, (int) PAGE, srcMr.lkey())), SIGNALED, attack, mr.rkey()));
        assertEquals(WcStatus.REM_ACCESS_ERR, cq.poll(1).getFirst().status(), "RDMA WRITE to iova+0x2000 ^ 2^63");

        QueuePair[] r = Fixture.pair(pd, cq, QpType.RC, 8);
        r[0].postSend(new SendWr.RdmaRead(2, List.of(new Sge(src, (int) PAGE, srcMr.lkey())), SIGNALED, attack, mr.rkey()));
        assertEquals(WcStatus.REM_ACCESS_ERR, cq.poll(1).getFirst().status(), "RDMA READ from iova+0x2000 ^ 2^63");

        QueuePair[] a = Fixture.pair(pd, cq, QpType.RC, 8);
        a[0].postSend(new SendWr.AtomicFetchAndAdd(3, List.of(new Sge(src, 8, srcMr.lkey())), SIGNALED, attack, mr.rkey(), 1));
        assertEquals(WcStatus.REM_ACCESS_ERR, cq.poll(1).getFirst().status(), "fetch-and-add at iova+0x2000 ^ 2^63");

        assertArrayEquals(before, f.read(buf - PAGE, before.length), "no byte of the region or around it changed");
    }

    @Test
    void aWrappedLocalSgeFailsTheWorkRequestWithLocProtErr() {
        MemoryRegion mr = pd.regMr(buf, LEN, Fixture.ALL_REMOTE);
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(new Sge(src ^ TOP, 64, srcMr.lkey())), SIGNALED, buf, mr.rkey()));
        assertEquals(WcStatus.LOC_PROT_ERR, cq.poll(1).getFirst().status());
    }

    @Test
    void aWindowBindWhoseEndWrapsIsRefused() {
        MemoryRegion mr = pd.regMr(buf, LEN, Access.LOCAL_WRITE | Access.MW_BIND);
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        MemoryWindow mw = pd.allocMw(MwType.TYPE_2);
        int free = mw.rkey();
        p[1].postSend(new SendWr.BindMw(1, SIGNALED, mw, SendWr.incRkey(mw.rkey()),
                new MwBindInfo(mr, buf + PAGE, -0x800, Access.REMOTE_WRITE)));
        assertEquals(WcStatus.MW_BIND_ERR, cq.poll(1).getFirst().status(), "C10-75: a length of 2^64 - 0x800");
        QueuePair[] q = Fixture.pair(pd, cq, QpType.RC, 8); // the refused bind left p in ERR
        q[1].postSend(new SendWr.BindMw(2, SIGNALED, mw, SendWr.incRkey(mw.rkey()),
                new MwBindInfo(mr, buf + PAGE, -0x800, Access.REMOTE_WRITE | Access.ZERO_BASED)));
        assertEquals(WcStatus.MW_BIND_ERR, cq.poll(1).getFirst().status(), "zero based, the same length");
        assertEquals(free, mw.rkey(), "the window stays free");
    }
}
