package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.MemoryWindow;
import dev.dmaplane.rdma.verbs.MwBindInfo;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.ResourceEntry;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.resource.ResourceLimits;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Contexts as uverbs files ({@code ibv_open_device(3)}, {@code ibv_close_device(3)}): handle tables with the
 * lowest free handle, the rdma cgroup's hca_handle and hca_object limits
 * ({@code Documentation/admin-guide/cgroup-v2.rst}, "RDMA"), objects that cannot cross contexts, close releasing
 * everything newest first ({@code RDMA_REMOVE_CLOSE}, which cannot be refused), and the listing of
 * {@code rdma resource show} ({@code rdma-resource(8)}).
 */
class ContextTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private final Fixture f = new Fixture();

    @AfterEach
    void close() {
        f.close();
    }

    @Test
    void theHcaHandleLimitCountsOpenContexts() {
        f.device().setLimits(new ResourceLimits(1, 100));
        VerbsContext a = f.device().open(f.mm);
        assertEquals(Errno.EAGAIN, assertThrows(ErrnoException.class, () -> f.device().open(f.mm)).errno());
        assertEquals(1, f.device().contextCount());
        a.close();
        a.close();
        f.device().open(f.mm).close();
        assertEquals(0, f.device().contextCount());
        assertEquals(Errno.EBADF, assertThrows(ErrnoException.class, a::allocPd).errno());
    }

    @Test
    void handlesAreTheLowestFree() {
        VerbsContext c = f.open();
        ProtectionDomain pd0 = c.allocPd();
        ProtectionDomain pd1 = c.allocPd();
        assertEquals(List.of(0, 1), List.of(pd0.handle(), pd1.handle()));
        pd0.destroy();
        assertEquals(0, c.createCq(4, null, 0).handle());
        assertNotEquals(pd0.pdn(), pd1.pdn());
    }

    @Test
    void objectsCannotCrossContexts() {
        VerbsContext a = f.open();
        VerbsContext b = f.open();
        ProtectionDomain pdA = a.allocPd();
        CompletionQueue cqB = b.createCq(4, null, 0);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> pdA.createQp(Fixture.qpInit(cqB, QpType.RC, 2))).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> a.createCq(4, b.createCompChannel(), 0)).errno());
        assertEquals(3, f.device().objectCount(), "the PD, the CQ and b's channel; the refusals added nothing");
    }

    @Test
    void closeDestroysEverythingNewestFirstAndCannotBeRefused() {
        PciFunction hca = f.machine.pci().function("04:00.0");
        long pins = f.machine.memory().pinsOutstanding();
        VerbsContext c = f.open();
        ProtectionDomain pd = c.allocPd();
        long buf = f.alloc(8 * PAGE);
        MemoryRegion mr = pd.regMr(buf, 8 * PAGE, Access.LOCAL_WRITE | Access.MW_BIND);
        CompletionQueue cq = c.createCq(8, null, 0);
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 4);
        MemoryWindow mw = pd.allocMw(MwType.TYPE_1);
        mw.bind(p[0], new MwBindInfo(mr, buf, PAGE, Access.REMOTE_READ), 1, 0);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, mr::destroy).errno(), "a user destroy may be refused");
        c.close();
        assertTrue(mr.isDestroyed() && mw.isDestroyed() && pd.isDestroyed());
        assertEquals(pins, f.machine.memory().pinsOutstanding());
        assertEquals(0, f.machine.activeDmaMappings(hca));
        assertEquals(0, f.device().objectCount());
        int n = f.provider().calls.size();
        assertEquals(List.of("destroyQp " + p[1].qpNum(), "destroyQp " + p[0].qpNum()),
                f.provider().calls.subList(n - 3, n - 1), "newest first: the second QP, the first, then the region");
        assertTrue(f.provider().calls.get(n - 1).startsWith("deregMr"));
    }

    @Test
    void resourcesAreListedLikeRdmaResShow() {
        VerbsContext c = f.open();
        ProtectionDomain pd = c.allocPd();
        long buf = f.alloc(4 * PAGE);
        MemoryRegion mr = pd.regMr(buf, 4 * PAGE, Access.LOCAL_WRITE);
        CompletionQueue cq = c.createCq(8, null, 0);
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 4);
        pd.createSrq(new SrqAttr(4, 1, 0));
        pd.createAh(AhAttr.roce(Gid.parse("::ffff:10.0.0.3"), 1, 1));
        pd.allocMw(MwType.TYPE_2);
        List<ResourceEntry> res = c.resources();
        assertEquals(List.of("pd", "mr", "cq", "qp", "qp", "srq", "ah", "mw"), res.stream().map(ResourceEntry::type).toList());
        Map<String, String> qp = res.get(3).attrs();
        assertEquals(Integer.toString(p[0].qpNum()), qp.get("lqpn"));
        assertEquals(Integer.toString(p[1].qpNum()), qp.get("rqpn"));
        assertEquals("RC", qp.get("type"));
        assertEquals("RTS", qp.get("state"));
        assertEquals("8", res.get(2).attrs().get("cqe"));
        assertEquals("4", res.get(2).attrs().get("users"), "each QP uses the CQ as send and as receive CQ (cq->usecnt)");
        assertEquals("6", res.get(0).attrs().get("users"), "two QPs, an SRQ, an AH, an MW and the region: "
                + res.get(0).attrs());
        assertEquals("0x" + Integer.toHexString(mr.lkey()), res.get(1).attrs().get("lkey"));
        String text = f.core.resShow();
        assertTrue(text.contains("dev rxe0 ctx 0 qp 3 lqpn " + p[0].qpNum()), text);
        assertEquals(res, f.device().resources());
    }
}
