package dev.dmaplane.driver.softroce;

import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.PortState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcFlags;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.LongStream;

import static dev.dmaplane.rdma.verbs.SendFlags.FENCE;
import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The data path between the machine's two HCAs over the fabric, through the public verbs: RC send/receive
 * (segmented by the path MTU, with immediate data), RDMA write and read of 1 MiB, atomics, RC ordering.
 */
@Timeout(60)
class DataPathTest {
    private final Hcas h = new Hcas();

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, Hcas.softroceThreads(), "no engine thread left");
    }

    private static long longOf(byte[] b) {
        return MemorySegment.ofArray(b).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
    }

    private static byte[] bytesOf(long v) {
        byte[] b = new byte[8];
        MemorySegment.ofArray(b).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, v);
        return b;
    }

    @Test
    void bindsBothHcaFunctionsAsRxeDevicesWithNetdevsAndOneEngineEach() {
        assertEquals(List.of("rxe0", "rxe1"), h.core.devices().stream().map(RdmaDevice::name).sorted().toList());
        RdmaDevice d = h.core.device("rxe0").orElseThrow();
        assertEquals("rdma_rxe", d.driverName());
        assertEquals(PortState.ACTIVE, d.portAttr(1).state());
        assertEquals(Mtu.MTU_1024, d.portAttr(1).activeMtu(), "netdev MTU 1500 gives RoCE MTU 1024");
        assertEquals(Gid.parse("::ffff:10.0.0.4"), h.a.gid);
        assertEquals(Gid.parse("::ffff:10.0.0.5"), h.b.gid);
        for (String bdf : List.of("04:00.0", "05:00.0")) {
            PciFunction fn = h.machine.pci().function(bdf);
            assertTrue(fn.busMasterEnabled(), bdf + " bus mastering");
        }
        assertEquals(2, Hcas.softroceThreads());
    }

    @Test
    void sendSegmentedByPathMtuAndSendWithImmediateArriveOnTheOtherHca() {
        QueuePair[] p = h.pair();
        byte[] msg = Hcas.random(5000, 1); // five packets at MTU 1024
        h.a.write(0, msg);
        h.b.write(0, new byte[8192]);
        p[1].postRecv(List.of(RecvWr.of(1, h.b.sge(0, 2000), h.b.sge(100_000, 4000)), RecvWr.of(2, h.b.sge(8192, 64))));
        p[0].postSend(new SendWr.Send(10, List.of(h.a.sge(0, 3000), h.a.sge(3000, 2000)), SIGNALED, null));
        p[0].postSend(new SendWr.SendWithImm(11, List.of(h.a.sge(0, 16)), SIGNALED, 0xCAFEBABE, null));

        List<WorkCompletion> sa = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(10L, 11L), sa.stream().map(WorkCompletion::wrId).toList());
        assertTrue(sa.stream().allMatch(WorkCompletion::isSuccess), sa.toString());
        assertEquals(List.of(WcOpcode.SEND, WcOpcode.SEND), sa.stream().map(WorkCompletion::opcode).toList());
        List<WorkCompletion> rb = Hcas.poll(h.b.cq, 2);
        assertEquals(5000, rb.get(0).byteLen());
        assertEquals(WcOpcode.RECV, rb.get(0).opcode());
        assertEquals(p[0].qpNum(), rb.get(0).srcQp());
        assertEquals(16, rb.get(1).byteLen());
        assertEquals(WcFlags.WITH_IMM, rb.get(1).wcFlags() & WcFlags.WITH_IMM);
        assertEquals(0xCAFEBABE, rb.get(1).immData());
        byte[] got = new byte[5000];
        System.arraycopy(h.b.read(0, 2000), 0, got, 0, 2000);
        System.arraycopy(h.b.read(100_000, 3000), 0, got, 2000, 3000);
        assertArrayEquals(msg, got);
        assertArrayEquals(Arrays.copyOf(msg, 16), h.b.read(8192, 16));
    }

    @Test
    void rdmaWriteAndReadOfOneMebibyteMoveRealBytesBothWays() {
        QueuePair[] p = h.pair();
        int n = 1 << 20;
        byte[] data = Hcas.random(n, 2);
        h.a.write(0, data);
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, n)), SIGNALED, h.b.buf + 4096 + 3, h.b.mr.rkey()));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertArrayEquals(data, h.b.read(4096 + 3, n));

        byte[] other = Hcas.random(n, 3);
        h.b.write(2 << 20, other);
        p[0].postSend(new SendWr.RdmaRead(2, List.of(h.a.sge(2 << 20, n)), SIGNALED, h.b.buf + (2 << 20), h.b.mr.rkey()));
        WorkCompletion rd = Hcas.one(h.a.cq);
        assertEquals(WcStatus.SUCCESS, rd.status());
        assertEquals(WcOpcode.RDMA_READ, rd.opcode());
        assertEquals(n, rd.byteLen());
        assertArrayEquals(other, h.a.read(2 << 20, n));
        assertTrue(h.b.cq.poll(4).isEmpty(), "RDMA write and read consume no receive");
    }

    @Test
    void zeroLengthSendAndWriteComplete() {
        QueuePair[] p = h.pair();
        p[1].postRecv(RecvWr.of(1));
        p[0].postSend(new SendWr.Send(1, List.of(), SIGNALED, null));
        p[0].postSend(new SendWr.RdmaWrite(2, List.of(), SIGNALED, 0, 0));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertEquals(0, Hcas.one(h.b.cq).byteLen());
    }

    @Test
    void everyByteMovesThroughTheHcasIommuDomains() {
        for (String bdf : List.of("04:00.0", "05:00.0")) {
            assertTrue(h.machine.activeDmaMappings(h.machine.pci().function(bdf)) >= 1, bdf + " maps its region");
        }
        rdmaWriteAndReadOfOneMebibyteMoveRealBytesBothWays();
        assertTrue(h.machine.iommu().faults().isEmpty());
    }

    @Test
    void writeWithImmediateConsumesAReceiveAtTheTarget() {
        QueuePair[] p = h.pair();
        h.a.write(0, "written with immediate data".getBytes());
        p[1].postRecv(RecvWr.of(7));
        p[0].postSend(new SendWr.RdmaWriteWithImm(3, List.of(h.a.sge(0, 27)), SIGNALED, h.b.buf + 64, h.b.mr.rkey(), 0x1234));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        WorkCompletion r = Hcas.one(h.b.cq);
        assertEquals(7, r.wrId());
        assertEquals(WcOpcode.RECV_RDMA_WITH_IMM, r.opcode());
        assertEquals(0x1234, r.immData());
        assertEquals(27, r.byteLen());
        assertArrayEquals("written with immediate data".getBytes(), h.b.read(64, 27));
    }

    @Test
    void atomicsFetchAddAndCompareSwapOnTheRemoteCounter() {
        QueuePair[] p = h.pair();
        h.b.write(4096, bytesOf(41));
        long counter = h.b.buf + 4096;
        int rkey = h.b.mr.rkey();
        p[0].postSend(new SendWr.AtomicFetchAndAdd(1, List.of(h.a.sge(0, 8)), SIGNALED, counter, rkey, 1));
        p[0].postSend(new SendWr.AtomicCmpAndSwp(2, List.of(h.a.sge(8, 8)), SIGNALED, counter, rkey, 42, 1000));
        p[0].postSend(new SendWr.AtomicCmpAndSwp(3, List.of(h.a.sge(16, 8)), SIGNALED, counter, rkey, 42, 7));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 3);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertEquals(List.of(WcOpcode.FETCH_ADD, WcOpcode.COMP_SWAP, WcOpcode.COMP_SWAP),
                wc.stream().map(WorkCompletion::opcode).toList());
        assertEquals(41, longOf(h.a.read(0, 8)));
        assertEquals(42, longOf(h.a.read(8, 8)));
        assertEquals(1000, longOf(h.a.read(16, 8)), "the second swap found 1000");
        assertEquals(1000, longOf(h.b.read(4096, 8)));
    }

    @Test
    void readsAndAtomicsPostedAfterWritesSeeThem() {
        QueuePair[] p = h.pair();
        int rkey = h.b.mr.rkey();
        List<SendWr> wrs = new ArrayList<>();
        for (int i = 0; i < 32; i++) {
            h.a.write(i * 8L, bytesOf(i * 100L));
            wrs.add(new SendWr.RdmaWrite(i, List.of(h.a.sge(i * 8L, 8)), 0, h.b.buf + 65536, rkey));
            wrs.add(new SendWr.RdmaRead(1000 + i, List.of(h.a.sge(8192 + i * 8L, 8)), SIGNALED | FENCE, h.b.buf + 65536, rkey));
        }
        wrs.add(new SendWr.AtomicFetchAndAdd(5000, List.of(h.a.sge(16384, 8)), SIGNALED | FENCE, h.b.buf + 65536, rkey, 5));
        p[0].postSend(wrs);
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 33);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        for (int i = 0; i < 32; i++) {
            assertEquals(i * 100L, longOf(h.a.read(8192 + i * 8L, 8)), "read " + i + " sees the write before it");
        }
        assertEquals(3100, longOf(h.a.read(16384, 8)));
        assertEquals(3105, longOf(h.b.read(65536, 8)));
    }

    @Test
    void manyMessagesBothWaysKeepOrder() {
        QueuePair[] p = h.pair();
        int n = 200;
        List<RecvWr> ra = new ArrayList<>();
        List<RecvWr> rb = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            ra.add(RecvWr.of(i, h.a.sge(1_000_000 + i * 4096L, 4096)));
            rb.add(RecvWr.of(i, h.b.sge(1_000_000 + i * 4096L, 4096)));
            h.a.write(i * 4L, bytesOf(i));
            h.b.write(i * 4L, bytesOf(-i));
        }
        p[0].postRecv(ra);
        p[1].postRecv(rb);
        for (int i = 0; i < n; i++) {
            p[0].postSend(new SendWr.Send(i, List.of(h.a.sge(i * 4L, 1500)), SIGNALED, null));
            p[1].postSend(new SendWr.Send(i, List.of(h.b.sge(i * 4L, 1500)), SIGNALED, null));
        }
        List<WorkCompletion> wa = Hcas.poll(h.a.cq, 2 * n);
        List<WorkCompletion> wb = Hcas.poll(h.b.cq, 2 * n);
        for (List<WorkCompletion> w : List.of(wa, wb)) {
            assertTrue(w.stream().allMatch(WorkCompletion::isSuccess));
            assertEquals(LongStream.range(0, n).boxed().toList(),
                    w.stream().filter(c -> c.opcode() == WcOpcode.RECV).map(WorkCompletion::wrId).toList());
        }
        for (int i = 0; i < n; i++) {
            assertEquals(-i & 0xFFFFFFFFL, longOf(h.a.read(1_000_000 + i * 4096L, 8)) & 0xFFFFFFFFL);
            assertEquals(i, longOf(h.b.read(1_000_000 + i * 4096L, 8)) & 0xFFFFFFFFL);
        }
    }
}
