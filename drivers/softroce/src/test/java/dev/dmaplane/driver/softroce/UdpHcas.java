package dev.dmaplane.driver.softroce;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.testing.Loopback;
import dev.dmaplane.testing.TestMachines;

import java.net.InetAddress;
import java.util.Map;

/**
 * Two machines, as two processes or hosts would be, each with its own RDMA core and rxe driver, whose HCA 0000:04:00.0
 * ({@code rxe0}) is on UDP at {@code 127.X.Y.<a>} and {@code 127.X.Y.<b>} ({@link Loopback}): nothing joins them but
 * the loopback's UDP. One {@link Hcas.Host} on each.
 */
final class UdpHcas implements AutoCloseable {
    static final String BDF = "0000:04:00.0";

    final Machine ma = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    final Machine mb = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    final RdmaCore ca = new RdmaCore(ma.tracer());
    final RdmaCore cb = new RdmaCore(mb.tracer());
    final SoftRoceDriver da;
    final SoftRoceDriver db;
    final Hcas.Host a;
    final Hcas.Host b;

    UdpHcas(int a, int b) {
        this(a, b, true);
    }

    /** As {@link #UdpHcas(int, int)}, the sockets batched ({@link MmsgSocket}) or one datagram per call. */
    UdpHcas(int a, int b, boolean nativeSocket) {
        String was = System.getProperty(SoftRoceDriver.UDP_NATIVE_PROPERTY);
        System.setProperty(SoftRoceDriver.UDP_NATIVE_PROPERTY, String.valueOf(nativeSocket));
        try {
            da = new SoftRoceDriver(ca, Map.of(BDF, loopback(a)));
            db = new SoftRoceDriver(cb, Map.of(BDF, loopback(b)));
        } finally {
            if (was == null) {
                System.clearProperty(SoftRoceDriver.UDP_NATIVE_PROPERTY);
            } else {
                System.setProperty(SoftRoceDriver.UDP_NATIVE_PROPERTY, was);
            }
        }
        ma.devices().registerDriver(da);
        mb.devices().registerDriver(db);
        this.a = new Hcas.Host(ma, ca, "rxe0");
        this.b = new Hcas.Host(mb, cb, "rxe0");
    }

    static InetAddress loopback(int host) {
        return Loopback.address(host);
    }

    Engine engineA() {
        return da.providers.get("rxe0").engine;
    }

    Engine engineB() {
        return db.providers.get("rxe0").engine;
    }

    UdpTransport udpA() {
        return (UdpTransport) engineA().transport;
    }

    UdpTransport udpB() {
        return (UdpTransport) engineB().transport;
    }

    /**
     * An RC pair a ↔ b, connected as {@link Hcas#pair()} connects one but with transport timeout 16 (268 ms): the
     * datagrams cross the kernel and a receive thread each way, and eight tries of 67 ms (half a second with nothing
     * moving) were reached on two cores under a load of 20; eight of 268 ms tolerate two seconds.
     */
    QueuePair[] pair() {
        QueuePair qa = a.rc();
        QueuePair qb = b.rc();
        Hcas.connect(qa, qb.qpNum(), b.gid, Hcas.ALL, 7, 7, 0x100, 16);
        Hcas.connect(qb, qa.qpNum(), a.gid, Hcas.ALL, 7, 7, 0x100, 16);
        return new QueuePair[]{qa, qb};
    }

    @Override
    public void close() {
        try {
            close(a, ma, ca, da);
        } finally {
            close(b, mb, cb, db);
        }
    }

    private static void close(Hcas.Host h, Machine m, RdmaCore core, SoftRoceDriver d) {
        h.ctx.close();
        if (m.devices().drivers().contains(d)) {
            m.devices().unregisterDriver(d);
        }
        d.deactivate();
        core.close();
        if (!h.mm.isClosed()) {
            h.mm.close();
        }
        m.close();
    }
}
