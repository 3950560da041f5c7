package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.MwBindInfo;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Windows on the HCA: a type 1 window bound with ibv_bind_mw opens exactly its range to remote writes; a type 2
 * window bound through the QP is closed again by a LOCAL_INV, after which its rkey is refused (IBTA 10.6.7).
 */
@Timeout(60)
class MemoryWindowTest extends HcaTestBase {
    @Test
    void windowsOpenExactlyTheirRangeAndLocalInvalidateClosesAType2Window() {
        QueuePair[] p = h.pair();
        var bindable = h.b.pd.regMr(h.b.buf, 65536, Hcas.ALL | Access.MW_BIND);
        var type1 = h.b.pd.allocMw(MwType.TYPE_1);
        int key1 = type1.bind(p[1], new MwBindInfo(bindable, h.b.buf + 4096, 4096,
                Access.REMOTE_WRITE), 10, SIGNALED);
        assertTrue(Hcas.one(h.b.cq).isSuccess());
        h.a.write(0, Hcas.random(32, 4));
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 32)), SIGNALED, h.b.buf + 4096 + 100, key1));
        assertTrue(Hcas.one(h.a.cq).isSuccess());
        assertArrayEquals(Hcas.random(32, 4), h.b.read(4096 + 100, 32));

        var type2 = h.b.pd.allocMw(MwType.TYPE_2);
        int key2 = SendWr.incRkey(type2.rkey());
        p[1].postSend(new SendWr.BindMw(11, SIGNALED, type2, key2, new MwBindInfo(bindable,
                h.b.buf + 8192, 4096, Access.REMOTE_WRITE)));
        assertTrue(Hcas.one(h.b.cq).isSuccess());
        p[0].postSend(new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 32)), SIGNALED, h.b.buf + 8192, key2));
        assertTrue(Hcas.one(h.a.cq).isSuccess());
        p[1].postSend(new SendWr.LocalInv(12, SIGNALED, key2));
        WorkCompletion inv = Hcas.one(h.b.cq);
        assertTrue(inv.isSuccess());
        assertEquals(WcOpcode.LOCAL_INV, inv.opcode());
        h.b.write(8192 + 64, new byte[32]);
        p[0].postSend(new SendWr.RdmaWrite(3, List.of(h.a.sge(0, 32)), SIGNALED, h.b.buf + 8192 + 64, key2));
        assertEquals(WcStatus.REM_ACCESS_ERR, Hcas.one(h.a.cq).status());
        assertArrayEquals(new byte[32], h.b.read(8192 + 64, 32), "the invalidated window let nothing through");

        // on the HCA's send queue, refused local operations end in their own statuses and the QP in ERR
        QueuePair[] q = h.pair();
        q[1].postSend(new SendWr.LocalInv(13, SIGNALED, key2)); // already invalid
        assertEquals(WcStatus.LOC_QP_OP_ERR, Hcas.one(h.b.cq).status());
        QueuePair[] r = h.pair();
        r[1].postSend(new SendWr.BindMw(14, SIGNALED, type2, SendWr.incRkey(type2.rkey()),
                new MwBindInfo(bindable, h.b.buf + 8192, 0, Access.REMOTE_WRITE)));
        assertEquals(WcStatus.MW_BIND_ERR, Hcas.one(h.b.cq).status(), "o10-37.2.40: zero length");
    }
}
