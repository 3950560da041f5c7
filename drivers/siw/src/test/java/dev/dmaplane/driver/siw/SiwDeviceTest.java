package dev.dmaplane.driver.siw;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufHandle;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AtomicCap;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.DeviceCap;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.LinkLayer;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;
import java.util.Set;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What tells siw from a RoCE HCA, each as siw does it: the attributes of {@code siw_query_device} and
 * {@code siw_query_port} ({@code drivers/infiniband/sw/siw/siw_verbs.c}, limits of {@code siw.h}); no UD or UC QPs
 * ({@code siw_create_qp}: EOPNOTSUPP); no atomics, no RDMA WRITE or SEND with immediate and one SGE per READ
 * ({@code siw_post_send}: EINVAL); RTS only through the CM ({@code siw_qp_nextstate_from_idle}: EINVAL without a
 * socket); no memory windows; no dma-buf regions ({@code siw_device_ops} has no {@code reg_user_mr_dmabuf}:
 * EOPNOTSUPP); and a READ whose sink is not remotely writable refused, as iWARP places the READ
 * response as a tagged write into the sink (RFC 5040 section 4.4).
 */
@Timeout(60)
class SiwDeviceTest {
    private final SiwHosts h = new SiwHosts(33, 34);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    @Test
    void theDeviceIsAnIwarpRnicWithSiwsLimits() {
        RdmaDevice d = h.ca.device("siw0").orElseThrow();
        assertEquals("siw", d.driverName());
        assertEquals(NodeType.RNIC, d.nodeType());
        assertEquals(NodeType.Transport.IWARP, d.nodeType().transport());
        DeviceAttr a = d.attr();
        assertEquals(AtomicCap.NONE, a.atomicCap());
        assertEquals(Set.of(DeviceCap.MEM_MGT_EXTENSIONS), a.caps());
        assertEquals(1, a.maxSgeRd());
        assertEquals(6, a.maxSendSge());
        assertEquals(6, a.maxRecvSge());
        assertEquals(80, a.maxInlineData());
        assertEquals(128, a.maxQpRdAtom());
        assertEquals(128, a.maxQpInitRdAtom());
        assertEquals(1024 * 32, a.maxQpWr());
        assertEquals(0x626d74, a.vendorId());
        assertEquals(0x001da0fffe000104L, a.sysImageGuid(), "EUI-64 of the netdev's MAC 02:1d:a0:00:01:04");

        PortAttr p = d.portAttr(1);
        assertEquals(LinkLayer.ETHERNET, p.linkLayer());
        assertEquals(0, p.pkeyTblLen(), "iWARP has no partitions");
        assertEquals(PortAttr.CAP_CM_SUP | PortAttr.CAP_DEVICE_MGMT_SUP, p.portCapFlags());
        assertEquals(Mtu.MTU_4096, p.activeMtu(), "the loopback's MTU 65536");
        assertEquals(65536, SiwDriver.hostMtu(SiwHosts.loopback(33)), "the netdev has the host interface's MTU");
        assertTrue(d.gidTable().stream().anyMatch(g -> g.gid().equals(Gid.of(SiwHosts.loopback(33)))),
                "the netdev's IPv4 address is a GID: " + d.gidTable());
    }

    @Test
    void udAndUcQpsAreRefused() {
        QpCap cap = new QpCap(8, 8, 1, 1, 0);
        for (QpType t : List.of(QpType.UD, QpType.UC)) {
            ErrnoException e = assertThrows(ErrnoException.class,
                    () -> h.a.pd.createQp(new QpInitAttr(h.a.cq, h.a.cq, null, cap, t, false)));
            assertEquals(Errno.EOPNOTSUPP, e.errno(), t.toString());
            assertTrue(e.getMessage().contains("only RC"), e.getMessage());
        }
    }

    @Test
    void rtsComesOnlyFromTheConnectionManager() {
        QueuePair q = h.a.rc();
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> q.modify(QpAttr.builder().state(QpState.RTS).build()));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("connection manager"), e.getMessage());
        assertEquals(QpState.INIT, q.query().qpState(), "IDLE as before (siw ignored the RTR), INIT to a query");
    }

    @Test
    void memoryWindowsAreRefused() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> h.a.pd.allocMw(MwType.TYPE_2));
        assertEquals(Errno.EOPNOTSUPP, e.errno());
    }

    @Test
    void atomicsImmediatesAndReadsOfSeveralSgesAreRefusedAtPost() {
        QueuePair q = h.pair()[0];
        List<SendWr> refused = List.of(
                new SendWr.AtomicCmpAndSwp(1, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey(), 0, 1),
                new SendWr.AtomicFetchAndAdd(2, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey(), 1),
                new SendWr.RdmaWriteWithImm(3, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey(), 7),
                new SendWr.SendWithImm(4, List.of(h.a.sge(0, 8)), SIGNALED, 7, null),
                new SendWr.RdmaRead(5, List.of(h.a.sge(0, 8), h.a.sge(64, 8)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        for (SendWr wr : refused) {
            PostException e = assertThrows(PostException.class, () -> q.postSend(List.of(wr)));
            assertEquals(Errno.EINVAL, e.errno(), wr.toString());
            assertEquals(wr.wrId(), e.badWr().wrId());
        }
        assertEquals(QpState.RTS, q.query().qpState(), "a refused post changes nothing");
        assertTrue(h.a.cq.poll(16).isEmpty(), "nothing was queued");
    }

    /**
     * A post {@code siw_post_send} refuses names its errno once ({@code ibv_post_send} returns one errno with
     * {@code bad_wr}): the errno, the bad request and siw's reason, not the errno a second time before the reason.
     */
    @Test
    void aRefusedPostSaysItsErrnoOnce() {
        QueuePair q = h.pair()[0];
        PostException e = assertThrows(PostException.class, () -> q.postSend(List.of(
                new SendWr.AtomicFetchAndAdd(7, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey(), 1))));
        assertEquals("EINVAL: bad_wr #0 (wr_id 7): siw0 has no atomics",
                e.getMessage());
    }

    /**
     * {@code siw_device_ops} ({@code drivers/infiniband/sw/siw/siw_main.c}) has no {@code reg_user_mr_dmabuf}, and
     * {@code UVERBS_METHOD_REG_DMABUF_MR} ({@code drivers/infiniband/core/uverbs_std_types_mr.c}) refuses a device
     * without it with EOPNOTSUPP before any other check: for every form of the call, for an fd that is not open
     * and for access bits it would otherwise call EINVAL. Nothing is attached, referenced or registered.
     */
    @Test
    void aDmabufRegionIsRefusedWithEopnotsuppAsSiwHasNoRegUserMrDmabuf() {
        DmaBuf buf = new SystemHeap(DmaBufs.of(h.ma)).allocate(64 << 10);
        DmaBufHandle fd = buf.fd(h.a.mm.files());
        long refs = buf.refCount();
        ProtectionDomain pd = h.a.ctx.allocPd();
        int rw = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
        List<Runnable> calls = List.of(
                () -> pd.regDmabufMr(0, 64 << 10, 0, fd, rw),
                () -> pd.regDmabufMr(0, 64 << 10, 0, fd.handle(), rw),
                () -> pd.regDmabufMr(0, 64 << 10, 0, buf, rw),
                () -> pd.regDmabufMr(0, 64 << 10, 0, 9999, rw),
                () -> pd.regDmabufMr(0, 64 << 10, 0, fd, rw | Access.ON_DEMAND));
        for (Runnable c : calls) {
            assertEquals(Errno.EOPNOTSUPP, assertThrows(ErrnoException.class, c::run).errno());
        }
        assertTrue(buf.attachments().isEmpty(), "nothing attached: " + buf.attachments());
        assertEquals(refs, buf.refCount(), "no reference kept");
        pd.destroy(); // EBUSY if a region had stayed behind
        buf.put(); // the allocation's; the fd's goes with the address space
    }

    @Test
    void aReadWhoseSinkIsNotRemotelyWritableIsRefused() {
        QueuePair q = h.pair()[0];
        MemoryRegion local = h.a.pd.regMr(h.a.buf + (2 << 20), 1 << 20, Access.LOCAL_WRITE);
        q.postSend(new SendWr.RdmaRead(1, List.of(new Sge(h.a.buf + (2 << 20), 4096,
                local.lkey())), SIGNALED, h.b.buf, h.b.mr.rkey()));
        WorkCompletion c = SiwHosts.one(h.a.cq);
        assertEquals(WcStatus.LOC_PROT_ERR, c.status(), c.toString());
        // the completion is written before the QP enters ERR: a query right after the poll may still see RTS
        eventually(() -> q.query().qpState() == QpState.ERR, SiwHosts.WAIT, "the QP in ERR");
        assertEquals(0L, SiwHosts.counter(h.db, "dmaplane_terminate_sent"),
                "the READ never left");
    }
}
