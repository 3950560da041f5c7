package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwAh;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.GlobalRoute;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.rdma.verbs.VerbsContext;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.function.Supplier;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Creation checks: {@code ibv_create_qp(3)} with rxe's {@code rxe_qp_chk_init} and {@code rxe_qp_chk_cap} (both
 * CQs, capabilities within the device's, an SRQ of the same PD, receive capabilities ignored with an SRQ),
 * {@code ibv_create_srq(3)} ({@code rxe_srq_chk_init}), {@code ibv_create_ah(3)} with {@code rdma_check_ah_attr}
 * (a RoCE address vector needs a GRH whose source GID exists), and the device limits ({@code max_qp}: ENOMEM). A
 * refused create charges and numbers nothing.
 */
class ObjectCreationTest {
    private final Fixture f = new Fixture(b -> b.maxQp(3));
    private final VerbsContext ctx = f.open();
    private final ProtectionDomain pd = ctx.allocPd();
    private final CompletionQueue cq = ctx.createCq(8, null, 0);
    private final DeviceAttr dev = ctx.queryDevice();

    @AfterEach
    void close() {
        f.close();
    }

    private void refused(Errno errno, Supplier<?> create, String what) {
        int objects = f.device().objectCount();
        ErrnoException e = assertThrows(ErrnoException.class, create::get, what);
        assertEquals(errno, e.errno(), what + ": " + e.getMessage());
        assertEquals(objects, f.device().objectCount(), what);
    }

    private QpInitAttr init(QpCap cap) {
        return new QpInitAttr(cq, cq, null, cap, QpType.RC, false);
    }

    @Test
    void queuePairs() {
        refused(Errno.EINVAL, () -> pd.createQp(new QpInitAttr(null, cq, null, new QpCap(1, 1, 1, 1, 0), QpType.RC, false)), "no send CQ");
        refused(Errno.EINVAL, () -> pd.createQp(new QpInitAttr(cq, cq, null, new QpCap(1, 1, 1, 1, 0), null, false)), "no type");
        refused(Errno.EINVAL, () -> pd.createQp(init(new QpCap(dev.maxQpWr() + 1, 1, 1, 1, 0))), "max_send_wr");
        refused(Errno.EINVAL, () -> pd.createQp(init(new QpCap(1, dev.maxQpWr() + 1, 1, 1, 0))), "max_recv_wr");
        refused(Errno.EINVAL, () -> pd.createQp(init(new QpCap(1, 1, dev.maxSendSge() + 1, 1, 0))), "max_send_sge");
        refused(Errno.EINVAL, () -> pd.createQp(init(new QpCap(1, 1, 1, dev.maxRecvSge() + 1, 0))), "max_recv_sge");
        refused(Errno.EINVAL, () -> pd.createQp(init(new QpCap(1, 1, 1, 1, dev.maxInlineData() + 1))), "max_inline_data");
        SharedReceiveQueue foreign = ctx.allocPd().createSrq(new SrqAttr(4, 1, 0));
        refused(Errno.EINVAL, () -> pd.createQp(new QpInitAttr(cq, cq, foreign, new QpCap(1, 0, 1, 0, 0), QpType.RC, false)),
                "an SRQ of another PD");

        SharedReceiveQueue srq = pd.createSrq(new SrqAttr(4, 1, 0));
        QueuePair onSrq = pd.createQp(new QpInitAttr(cq, cq, srq, new QpCap(1, dev.maxQpWr() + 5, 1, 99, 0), QpType.UD, false));
        assertEquals(new QpCap(1, 0, 1, 0, 0), onSrq.cap(), "with an SRQ the receive capabilities are ignored");
        assertEquals(QpState.RESET, onSrq.state());
        assertTrue(onSrq.qpNum() >= 16, "QP numbers start after the special QPs: " + onSrq.qpNum());
        pd.createQp(init(new QpCap(1, 1, 1, 1, 0)));
        pd.createQp(init(new QpCap(1, 1, 1, 1, 0)));
        refused(Errno.ENOMEM, () -> pd.createQp(init(new QpCap(1, 1, 1, 1, 0))), "max_qp 3");
    }

    @Test
    void sharedReceiveQueues() {
        refused(Errno.EINVAL, () -> pd.createSrq(new SrqAttr(0, 1, 0)), "max_wr 0");
        refused(Errno.EINVAL, () -> pd.createSrq(new SrqAttr(dev.maxSrqWr() + 1, 1, 0)), "max_wr beyond max_srq_wr");
        refused(Errno.EINVAL, () -> pd.createSrq(new SrqAttr(4, dev.maxSrqSge() + 1, 0)), "max_sge beyond max_srq_sge");
        assertEquals(new SrqAttr(4, 2, 0), pd.createSrq(new SrqAttr(4, 2, 3)).query());
    }

    @Test
    void addressHandles() {
        Gid dgid = Gid.parse("::ffff:10.0.0.9");
        refused(Errno.EINVAL, () -> pd.createAh(new AhAttr(null, 0, 0, 0, 0, 1)), "RoCE without GRH");
        refused(Errno.EINVAL, () -> pd.createAh(AhAttr.roce(dgid, 1, 2)), "port 2");
        refused(Errno.EINVAL, () -> pd.createAh(AhAttr.roce(dgid, 16, 1)), "sgid index beyond the table");
        refused(Errno.EINVAL, () -> pd.createAh(AhAttr.roce(dgid, 9, 1)), "empty GID entry");
        refused(Errno.EINVAL, () -> pd.createAh(new AhAttr(new GlobalRoute(dgid, 1 << 20, 1, 64, 0), 0, 0, 0, 0, 1)), "flow label");
        refused(Errno.EINVAL, () -> pd.createAh(new AhAttr(GlobalRoute.to(dgid, 1), 0, 16, 0, 0, 1)), "SL 16");
        var ah = pd.createAh(AhAttr.roce(dgid, 2, 1));
        assertEquals(Gid.parse("fd00::1"), ((HwAh) ah).sgid().gid(), "the source GID the index names");
    }
}
