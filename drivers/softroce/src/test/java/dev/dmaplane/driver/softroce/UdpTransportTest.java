package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.Loopback;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The UDP transport ({@code rxe_net.c}'s UDP tunnel on port 4791) between two machines that share nothing but the
 * loopback: each HCA's GID is its IPv4 address, packets travel as RoCEv2 datagrams, a receive thread per port
 * hands them to the engine and ends with the driver; RC WRITE, READ, SEND (several packets, with immediate), WRITE
 * with immediate over several packets, and atomics, every byte checked.
 */
@Timeout(60)
@ParameterizedClass(name = "native sendmmsg/recvmmsg {0}")
@ValueSource(booleans = {true, false})
class UdpTransportTest {
    private final boolean nativeSocket;
    private final UdpHcas u;

    UdpTransportTest(boolean nativeSocket) {
        this.nativeSocket = nativeSocket;
        this.u = new UdpHcas(11, 12, nativeSocket);
    }

    @AfterEach
    void close() {
        u.close();
        assertEquals(0, Hcas.softroceThreads(), "no engine or receive thread left");
    }

    private static long longOf(byte[] b) {
        return MemorySegment.ofArray(b).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
    }

    @Test
    void aPortOnUdpHasItsAddressAsGidASocketAndAReceiveThread() {
        assertEquals(Gid.of(Loopback.address(11)), u.a.gid);
        assertEquals(Gid.of(Loopback.address(12)), u.b.gid);
        assertInstanceOf(UdpTransport.class, u.engineA().transport);
        assertEquals(nativeSocket && MmsgSocket.AVAILABLE, u.udpA().batched(), "the socket asked for");
        assertEquals(Mtu.MTU_4096, u.ca.device("rxe0").orElseThrow().portAttr(1).activeMtu(), "jumbo netdev");
        assertEquals(1, Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().equals("softroce-udp-" + Loopback.ip(11)) && t.isAlive()).count());
    }

    @Test
    void writeReadSendAndAtomicsCrossTheLoopbackWithEveryByteChecked() {
        QueuePair[] p = u.pair();
        byte[] data = Hcas.random(1 << 20, 21);
        u.a.write(0, data);
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(u.a.sge(0, data.length)), SIGNALED, u.b.buf, u.b.mr.rkey()));
        assertTrue(Hcas.one(u.a.cq).isSuccess());
        assertArrayEquals(data, u.b.read(0, data.length), "1 MiB written into the other machine");
        p[0].postSend(new SendWr.RdmaRead(2, List.of(u.a.sge(2 << 20, data.length)), SIGNALED, u.b.buf,
                u.b.mr.rkey()));
        assertTrue(Hcas.one(u.a.cq).isSuccess());
        assertArrayEquals(data, u.a.read(2 << 20, data.length), "1 MiB read back");

        p[1].postRecv(List.of(RecvWr.of(1, u.b.sge(1 << 20, 8192)), RecvWr.of(2, u.b.sge(1 << 20, 64))));
        p[0].postSend(new SendWr.Send(3, List.of(u.a.sge(0, 5000)), SIGNALED, null)); // five packets
        p[0].postSend(new SendWr.RdmaWriteWithImm(4, List.of(u.a.sge(0, 3000)), SIGNALED, u.b.buf + 65536,
                u.b.mr.rkey(), 0x5EED)); // three packets, the last carries the immediate
        List<WorkCompletion> s = Hcas.poll(u.a.cq, 2);
        assertTrue(s.stream().allMatch(WorkCompletion::isSuccess), s.toString());
        List<WorkCompletion> r = Hcas.poll(u.b.cq, 2);
        assertEquals(WcOpcode.RECV, r.get(0).opcode());
        assertEquals(5000, r.get(0).byteLen());
        assertEquals(WcOpcode.RECV_RDMA_WITH_IMM, r.get(1).opcode());
        assertEquals(0x5EED, r.get(1).immData());
        assertEquals(3000, r.get(1).byteLen());
        assertArrayEquals(Arrays.copyOf(data, 5000), u.b.read(1 << 20, 5000));

        u.b.write((4 << 20) - 64, new byte[8]);
        long target = u.b.buf + (4 << 20) - 64;
        p[0].postSend(new SendWr.AtomicCmpAndSwp(5, List.of(u.a.sge(3 << 20, 8)), SIGNALED, target, u.b.mr.rkey(),
                0, 40));
        p[0].postSend(new SendWr.AtomicFetchAndAdd(6, List.of(u.a.sge((3 << 20) + 8, 8)), SIGNALED, target,
                u.b.mr.rkey(), 2));
        List<WorkCompletion> at = Hcas.poll(u.a.cq, 2);
        assertTrue(at.stream().allMatch(WorkCompletion::isSuccess), at.toString());
        assertEquals(0, longOf(u.a.read(3 << 20, 8)));
        assertEquals(40, longOf(u.a.read((3 << 20) + 8, 8)));
        assertEquals(42, longOf(u.b.read((4 << 20) - 64, 8)));
        assertTrue(u.udpA().sent.get() > 1024 && u.udpB().received.get() > 1024, "datagrams, not objects");
    }
}
