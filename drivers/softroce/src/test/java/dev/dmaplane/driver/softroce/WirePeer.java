package dev.dmaplane.driver.softroce;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.testing.Loopback;
import dev.dmaplane.testing.TestMachines;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * One side of a connection between two processes: a machine of its own with rxe0 (0000:04:00.0) on UDP at {@code
 * 127.X.Y.<host>} ({@link Loopback}), an application with a registered buffer and one RC QP. Run as a program (the
 * child JVM of {@link TwoProcessTest}), it prints {@code PEER <qpn> <va> <rkey>}, reads {@code CONNECT <qpn>}, connects
 * its QP to the peer, prints {@code READY}, and on {@code QUIT} (or the end of its input) takes everything down, prints
 * {@code BYE} and exits 0: the passive side of an RDMA WRITE and READ, as perftest's server is.
 */
final class WirePeer implements AutoCloseable {
    final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    final RdmaCore core = new RdmaCore(machine.tracer());
    final SoftRoceDriver driver;
    final Hcas.Host host;
    final QueuePair qp;

    WirePeer(int hostByte) {
        driver = new SoftRoceDriver(core, Map.of(UdpHcas.BDF, UdpHcas.loopback(hostByte)));
        machine.devices().registerDriver(driver);
        host = new Hcas.Host(machine, core, "rxe0");
        qp = host.rc();
    }

    /**
     * Connects the QP to {@code peerQpn} at {@code peer} (INIT, RTR, RTS as {@link Hcas#connect}), with a transport
     * timeout of about a second (timeout 18): two JVMs on a loaded machine may each stop for longer than the
     * in-process tests' 67 ms, and eight such stops in a row would end a request in RETRY_EXC_ERR.
     */
    void connect(int peerQpn, Gid peer) {
        Hcas.connect(qp, peerQpn, peer, Hcas.ALL, 7, 7, 0x100, 18);
    }

    @Override
    public void close() {
        host.ctx.close();
        machine.devices().unregisterDriver(driver);
        driver.deactivate();
        core.close();
        host.mm.close();
        machine.close();
    }

    public static void main(String[] args) throws IOException {
        int me = Integer.parseInt(args[0]);
        Gid peer = Gid.of(UdpHcas.loopback(Integer.parseInt(args[1])));
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (WirePeer p = new WirePeer(me)) {
            out.println("PEER " + p.qp.qpNum() + " " + p.host.buf + " " + p.host.mr.rkey());
            String line;
            while ((line = in.readLine()) != null && !line.equals("QUIT")) {
                if (line.startsWith("CONNECT ")) {
                    p.connect(Integer.parseInt(line.substring(8).strip()), peer);
                    out.println("READY");
                }
            }
        }
        out.println("BYE");
    }
}
