package dev.dmaplane.driver.softroce;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.EventChannel;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.VerbsContext;

import java.lang.foreign.MemorySegment;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * One end of an rdma_cm connection in a test, as a librdmacm program holds it: a process, its event channel, an id
 * and, once the id has a device, a PD, a CQ, a registered 1 MiB buffer and the id's RC QP.
 */
final class CmEnd implements AutoCloseable {
    static final Duration WAIT = Duration.ofSeconds(10);
    static final long BUF = 1 << 20;

    final AddressSpace mm;
    final EventChannel ch;
    CmId id;
    ProtectionDomain pd;
    CompletionQueue cq;
    long buf;
    MemoryRegion mr;
    QueuePair qp;

    CmEnd(Machine machine, RdmaCore core, String name) {
        mm = machine.newAddressSpace(name);
        ch = core.cm().createEventChannel(mm);
    }

    static InetSocketAddress at(String ip, int port) {
        try {
            return new InetSocketAddress(InetAddress.getByName(ip), port);
        } catch (UnknownHostException e) {
            throw new IllegalArgumentException(ip, e);
        }
    }

    /** The next event, which must be of type {@code t}; acknowledged. */
    CmEvent expect(CmEventType t) {
        CmEvent e = ch.getEvent(WAIT);
        assertEquals(t, e.type(), e.toString());
        e.ack();
        return e;
    }

    /** PD, CQ, buffer and region on {@code on}'s device, and {@code on}'s QP (rdma_create_qp). */
    void resources(CmId on) {
        id = on;
        VerbsContext v = on.verbs();
        pd = v.allocPd();
        cq = v.createCq(256, null, 0);
        buf = mm.mmapAnonymous(BUF, Prot.PROT_READ | Prot.PROT_WRITE);
        mr = pd.regMr(buf, BUF, Hcas.ALL);
        qp = on.createQp(pd, new QpInitAttr(cq, cq, null, new QpCap(64, 64, 1, 1, 0), QpType.RC, false));
    }

    Sge sge(long off, long len) {
        return new Sge(buf + off, len, mr.lkey());
    }

    void write(long off, byte[] b) {
        mm.write(buf + off, MemorySegment.ofArray(b));
    }

    byte[] read(long off, int len) {
        byte[] b = new byte[len];
        mm.read(buf + off, MemorySegment.ofArray(b));
        return b;
    }

    @Override
    public void close() {
        ch.close();
        if (!mm.isClosed()) {
            mm.close();
        }
    }
}
