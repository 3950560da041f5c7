package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.DeviceCap;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.MemoryWindow;
import dev.dmaplane.rdma.verbs.MwBindInfo;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.ReregFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcFlags;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.EnumSet;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Memory windows as {@code ibv_alloc_mw(3)} and {@code ibv_bind_mw(3)} describe them and rdma_rxe's
 * {@code rxe_mw.c} checks them (with the IBA rules it cites: o10-36.2.2, o10-37.2.30, C10-72..75,
 * o10-37.2.26): keys from the window index space, {@code ibv_inc_rkey} on each type 1 bind, the consumer's key
 * byte on a type 2 bind, MW_BIND_ERR for a refused bind, type 2 windows tied to their QP and freed by LOCAL_INV or
 * SEND_WITH_INV, zero-based windows, and IBA 10.6.7.2.6: no deregistration under a bound window.
 */
class MemoryWindowTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private final Fixture f = new Fixture();
    private final VerbsContext ctx = f.open();
    private final ProtectionDomain pd = ctx.allocPd();
    private final CompletionQueue cq = ctx.createCq(256, null, 0);
    private final long buf = f.alloc(8 * PAGE);
    private final MemoryRegion mr = pd.regMr(buf, 8 * PAGE, Access.LOCAL_WRITE | Access.MW_BIND);
    private final long src = f.alloc(PAGE);
    private final MemoryRegion srcMr = pd.regMr(src, PAGE, Access.LOCAL_WRITE);
    private final QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 32);

    @AfterEach
    void close() {
        f.close();
    }

    /** An RDMA write over a fresh connected pair (a failed one leaves its pair in ERR). */
    private WcStatus write(long raddr, int rkey, int len) {
        return write(Fixture.pair(pd, cq, QpType.RC, 8)[0], raddr, rkey, len);
    }

    private WcStatus write(QueuePair from, long raddr, int rkey, int len) {
        from.postSend(new SendWr.RdmaWrite(9, List.of(new Sge(src, len, srcMr.lkey())), SIGNALED, raddr, rkey));
        return cq.poll(1).getFirst().status();
    }

    @Test
    void type1BindIncrementsTheKeyAndOpensExactlyTheWindow() {
        MemoryWindow mw = pd.allocMw(MwType.TYPE_1);
        int index = mw.rkey() >>> 8;
        assertTrue(index >= 0x10001 && index <= 0x20000, "window indices are 0x10001..0x20000");
        int first = mw.rkey();
        assertEquals(WcStatus.REM_ACCESS_ERR, write(buf, first, 8), "an unbound window grants nothing");
        QueuePair fresh = Fixture.pair(pd, cq, QpType.RC, 8)[0];
        int key = mw.bind(fresh, new MwBindInfo(mr, buf + PAGE, PAGE, Access.REMOTE_WRITE), 5, SIGNALED);
        assertEquals(SendWr.incRkey(first), key);
        assertEquals(index, key >>> 8);
        assertEquals((first + 1) & 0xFF, key & 0xFF);
        assertEquals(key, mw.rkey());
        WorkCompletion b = cq.poll(1).getFirst();
        assertEquals(WcOpcode.BIND_MW, b.opcode());
        assertEquals(5, b.opcode().value());
        assertTrue(b.isSuccess());

        f.write(src, "window".getBytes());
        assertEquals(WcStatus.SUCCESS, write(buf + PAGE + 10, key, 6));
        assertArrayEquals("window".getBytes(), f.read(buf + PAGE + 10, 6));
        assertEquals(WcStatus.REM_ACCESS_ERR, write(buf, key, 8), "outside the window");
        assertEquals(WcStatus.REM_ACCESS_ERR, write(buf + PAGE, first, 8), "the old key");

        QueuePair[] q = Fixture.pair(pd, cq, QpType.RC, 8);
        q[0].postSend(new SendWr.RdmaRead(9, List.of(new Sge(src, 8, srcMr.lkey())), SIGNALED, buf + PAGE, key));
        assertEquals(WcStatus.REM_ACCESS_ERR, cq.poll(1).getFirst().status(), "the window grants write only");

        int unbound = mw.bind(fresh, new MwBindInfo(null, 0, 0, 0), 6, 0);
        assertEquals(WcStatus.REM_ACCESS_ERR, write(buf + PAGE, unbound, 8), "unbound again");
    }

    @Test
    void type1BindRefusals() {
        MemoryWindow mw = pd.allocMw(MwType.TYPE_1);
        ProtectionDomain other = ctx.allocPd();
        long o = f.alloc(PAGE);
        MemoryRegion otherMr = other.regMr(o, PAGE, Access.LOCAL_WRITE | Access.MW_BIND);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> mw.bind(p[0], new MwBindInfo(null, buf, 8, Access.REMOTE_READ), 1, 0)).errno());
        assertEquals(Errno.EPERM, assertThrows(ErrnoException.class,
                () -> mw.bind(p[0], new MwBindInfo(otherMr, o, 8, Access.REMOTE_READ), 1, 0)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> mw.bind(p[0], new MwBindInfo(mr, 0, 8, Access.REMOTE_READ | Access.ZERO_BASED), 1, 0)).errno());
        MemoryWindow t2 = pd.allocMw(MwType.TYPE_2);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> t2.bind(p[0], new MwBindInfo(mr, buf, 8, Access.REMOTE_READ), 1, 0)).errno());
        int key = mw.rkey();
        assertEquals(key, mw.rkey(), "refused binds change no key");

        MemoryRegion noBind = pd.regMr(buf, PAGE, Access.LOCAL_WRITE);
        MemoryRegion readOnly = pd.regMr(buf, PAGE, Access.MW_BIND);
        Object[][] refused = {
                {noBind, buf, PAGE, Access.REMOTE_READ, "C10-73: the region lacks MW_BIND"},
                {readOnly, buf, PAGE, Access.REMOTE_WRITE, "C10-74: a writable window needs local write on the region"},
                {mr, buf + 7 * PAGE, 2 * PAGE, Access.REMOTE_READ, "C10-75: the window must lie inside the region"},
        };
        for (Object[] r : refused) {
            QueuePair qp = Fixture.pair(pd, cq, QpType.RC, 8)[0];
            mw.bind(qp, new MwBindInfo((MemoryRegion) r[0], (long) r[1], (long) r[2], (int) r[3]), 1, 0);
            WorkCompletion wc = cq.poll(1).getFirst();
            assertEquals(WcStatus.MW_BIND_ERR, wc.status(), (String) r[4]);
            assertEquals(6, wc.status().value());
            assertEquals(QpState.ERR, qp.state());
        }
    }

    @Test
    void aRegionWithABoundWindowCannotBeDeregistered() {
        MemoryWindow mw = pd.allocMw(MwType.TYPE_1);
        mw.bind(p[0], new MwBindInfo(mr, buf, PAGE, Access.REMOTE_READ), 1, 0);
        ErrnoException e = assertThrows(ErrnoException.class, mr::destroy);
        assertEquals(Errno.EINVAL, e.errno(), "IBA 10.6.7.2.6 / rxe_dereg_mr");
        assertFalse(mr.isDestroyed());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> mr.rereg(ReregFlags.CHANGE_ACCESS, null, 0, 0, Access.LOCAL_WRITE)).errno(),
                "rereg answers a bound window as dereg does");
        mw.destroy();
        mr.destroy();
    }

    @Test
    void type2WindowsBindThroughTheirQpAndAreFreedByInvalidation() {
        MemoryWindow mw = pd.allocMw(MwType.TYPE_2);
        int free = mw.rkey();
        // bound on the responder's QP: only requests arriving at that QP may use it
        int key = SendWr.incRkey(free);
        p[1].postSend(new SendWr.BindMw(1, SIGNALED, mw, key, new MwBindInfo(mr, buf, 2 * PAGE, Access.REMOTE_WRITE | Access.REMOTE_READ)));
        assertTrue(cq.poll(1).getFirst().isSuccess());
        assertEquals(key, mw.rkey());
        assertEquals(WcStatus.SUCCESS, write(p[0], buf + 100, key, 8));
        assertEquals(WcStatus.REM_ACCESS_ERR, write(buf + 100, key, 8), "another QP pair cannot use it");

        p[1].postSend(new SendWr.LocalInv(2, SIGNALED, key ^ 0x40));
        WorkCompletion bad = cq.poll(1).getFirst();
        assertEquals(WcStatus.LOC_QP_OP_ERR, bad.status(), "the wrong key does not invalidate");
        assertEquals(2, bad.status().value());

        QueuePair[] r = Fixture.pair(pd, cq, QpType.RC, 8);
        int k2 = SendWr.incRkey(key);
        r[1].postSend(new SendWr.BindMw(3, SIGNALED, mw, k2, new MwBindInfo(mr, buf, PAGE, Access.REMOTE_WRITE)));
        assertEquals(WcStatus.MW_BIND_ERR, cq.poll(1).getFirst().status(), "o10-37.2.30: a bound type 2 window is not free");
        QueuePair[] s = Fixture.pair(pd, cq, QpType.RC, 8);
        s[1].postSend(new SendWr.LocalInv(4, SIGNALED, key));
        assertTrue(cq.poll(1).getFirst().isSuccess());
        s[1].postSend(new SendWr.BindMw(5, SIGNALED, mw, k2, new MwBindInfo(mr, buf, PAGE, Access.REMOTE_WRITE)));
        assertTrue(cq.poll(1).getFirst().isSuccess(), "free again, it binds with a new key");
        assertEquals(k2, mw.rkey());
        assertEquals(WcStatus.SUCCESS, write(s[0], buf, k2, 8));
        assertEquals(WcStatus.REM_ACCESS_ERR, write(buf, key, 8), "the previous key is dead");

        // send with invalidate: the responder's receive reports the invalidated key, the window is free
        s[1].postRecv(RecvWr.of(6, new Sge(buf + 3 * PAGE, 16, mr.lkey())));
        s[0].postSend(new SendWr.SendWithInv(7, List.of(new Sge(src, 4, srcMr.lkey())), SIGNALED, k2));
        List<WorkCompletion> wc = Fixture.poll(cq, 2);
        WorkCompletion recv = wc.stream().filter(w -> w.wrId() == 6).findFirst().orElseThrow();
        assertEquals(WcFlags.WITH_INV, recv.wcFlags() & WcFlags.WITH_INV);
        assertEquals(k2, recv.invalidatedRkey());
        assertEquals(WcStatus.REM_ACCESS_ERR, write(s[0], buf, k2, 8), "invalidated");
    }

    @Test
    void type2BindRefusals() {
        MemoryWindow mw = pd.allocMw(MwType.TYPE_2);
        p[1].postSend(new SendWr.BindMw(1, SIGNALED, mw, SendWr.incRkey(mw.rkey()), new MwBindInfo(mr, buf, 0, Access.REMOTE_READ)));
        assertEquals(WcStatus.MW_BIND_ERR, cq.poll(1).getFirst().status(), "o10-37.2.40: zero length");
        ProtectionDomain other = ctx.allocPd();
        QueuePair[] q = Fixture.pair(other, cq, QpType.RC, 8);
        q[1].postSend(new SendWr.BindMw(2, SIGNALED, mw, SendWr.incRkey(mw.rkey()), new MwBindInfo(mr, buf, 8, Access.REMOTE_READ)));
        assertEquals(WcStatus.MW_BIND_ERR, cq.poll(1).getFirst().status(), "C10-72: the QP is in another PD");
    }

    @Test
    void zeroBasedType2WindowsCountFromTheirStart() {
        MemoryWindow mw = pd.allocMw(MwType.TYPE_2);
        int key = SendWr.incRkey(mw.rkey());
        p[1].postSend(new SendWr.BindMw(1, SIGNALED, mw, key,
                new MwBindInfo(mr, buf + 2 * PAGE, PAGE, Access.REMOTE_WRITE | Access.ZERO_BASED)));
        assertTrue(cq.poll(1).getFirst().isSuccess());
        f.write(src, "zero-based".getBytes());
        assertEquals(WcStatus.SUCCESS, write(p[0], 0x10, key, 10));
        assertArrayEquals("zero-based".getBytes(), f.read(buf + 2 * PAGE + 0x10, 10));
        assertEquals(WcStatus.REM_ACCESS_ERR, write(p[0], PAGE - 4, key, 8), "past the window's end");
    }

    @Test
    void windowsNeedTheDeviceCapability() {
        f.close();
        Fixture g = new Fixture(b -> b.caps(EnumSet.noneOf(DeviceCap.class)));
        try {
            ProtectionDomain pd2 = g.open().allocPd();
            assertEquals(Errno.EOPNOTSUPP, assertThrows(ErrnoException.class, () -> pd2.allocMw(MwType.TYPE_1)).errno());
            assertEquals(Errno.EOPNOTSUPP, assertThrows(ErrnoException.class, () -> pd2.allocMw(MwType.TYPE_2)).errno());
        } finally {
            g.close();
        }
    }
}
