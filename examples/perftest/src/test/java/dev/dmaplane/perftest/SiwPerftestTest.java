package dev.dmaplane.perftest;

import dev.dmaplane.device.Device;
import dev.dmaplane.driver.siw.SiwDriver;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.testing.Loopback;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * perftest over siw in one process, siw0 (client) to siw1 (server) over the loopback's TCP: the QPs connect through
 * the rdma_cm as perftest connects them when the device is iWARP ({@code perftest_communication.c},
 * {@code rdma_cm_client_connection} / {@code rdma_cm_server_connection}; {@code cma.c}'s iWARP branches), every
 * tool iWARP carries moves and checks its bytes, and the atomic tools are refused in one line naming why (RFC 5040
 * has no atomics; siw's {@code atomic_cap} is NONE).
 */
@Timeout(120)
class SiwPerftestTest {
    static Machine machine;
    static RdmaCore core;
    static SiwDriver driver;

    @BeforeAll
    static void boot() {
        machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
        core = new RdmaCore(machine.tracer());
        driver = new SiwDriver(core, Map.of("0000:04:00.0", Loopback.address(61), "0000:05:00.0",
                Loopback.address(62)));
        machine.devices().registerDriver(driver);
        for (String bdf : new String[]{"0000:04:00.0", "0000:05:00.0"}) { // rdma link add siwN type siw netdev ethN
            Device fn = machine.devices().findDevice(bdf).orElseThrow();
            machine.devices().setDriverOverride(fn, SiwDriver.NAME);
            machine.devices().bind(fn, driver);
        }
    }

    @AfterAll
    static void shutdown() {
        machine.devices().unregisterDriver(driver);
        driver.deactivate();
        core.close();
        machine.close();
        assertEquals(0, Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith("siw-") && t.isAlive()).count(), "no siw thread left");
    }

    private static PerfResult run(String... args) {
        PerfResult r = Perftest.run(machine, core, PerfConfig.parse(args), "siw0", "siw1",
                Perftest.BeforeCheck.NONE);
        System.out.print(r.report());
        return r;
    }

    @ParameterizedTest
    @ValueSource(strings = {"write_bw", "read_bw", "send_bw"})
    void bandwidthToolsMoveAndCheckTheBytesOverSiw(String tool) {
        PerfResult r = run(tool, "-s", "65536", "-n", "200", "-q", "2", "-t", "32");
        PerfResult.Bw row = assertInstanceOf(PerfResult.Bw.class, r.rows().getFirst());
        assertEquals(65536, row.bytes());
        assertEquals(400, row.iterations(), "200 per QP on 2 QPs");
        assertTrue(row.bwAverage() > 0, row.toString());
        assertTrue(r.report().contains("siw0 -> siw1"), r.report());
        assertTrue(r.report().contains("Transport type : IW\n"), "transport_str of an iWARP device: " + r.report());
        assertTrue(r.report().contains(" rdma_cm QPs\t : ON\n"), "iWARP QPs connect through the rdma_cm");
    }

    @ParameterizedTest
    @ValueSource(strings = {"write_lat", "read_lat", "send_lat"})
    void latencyToolsRunOverSiw(String tool) {
        PerfResult r = run(tool, "-s", "64", "-n", "100");
        PerfResult.Lat row = assertInstanceOf(PerfResult.Lat.class, r.rows().getFirst());
        assertEquals(100, row.iterations());
        assertTrue(row.tMin() > 0, row.toString());
    }

    /**
     * {@code ./dmaplane perf write_bw -d siw0}: a machine of its own with siw attached to both Ethernet functions,
     * both ends in this process, the QPs connected through the rdma_cm.
     */
    @Test
    void aStandaloneRunOnSiw0AttachesSiwToBothFunctions() {
        PerfResult r = Standalone.run(PerfConfig.parse("write_bw", "-s", "65536", "-n", "100"), "siw0",
                Map.of("0000:04:00.0", Loopback.address(63), "0000:05:00.0", Loopback.address(64)));
        System.out.print(r.report());
        assertTrue(r.report().contains("siw0 -> siw1"), r.report());
        assertEquals(100, r.rows().getFirst().iterations());
    }

    /** perftest forces the rdma_cm on iWARP: the QPs are the ids' there too, and go with them. */
    @Test
    void theQpsAreTheCmIdsAndGoWithThem() {
        List<CmId> ids = new ArrayList<>();
        List<QueuePair> qps = new ArrayList<>();
        Perftest.run(machine, core, PerfConfig.parse("read_bw", "-n", "20", "-s", "4096", "-q", "2"), "siw0", "siw1",
                (cfg, client, server) -> PerftestTest.collectIdQps(client, server, 2, ids, qps));
        PerftestTest.assertIdQpsDestroyed(core, ids, qps, 4);
    }

    /** {@code -d} alone is a run in this process on that device; one it does not know is one line, exit 1. */
    @Test
    void dAloneRunsHereAndAnUnknownDeviceIsOneLine() throws Exception {
        assertTrue(((PerfCli.ToolCommand) PerfCli.commandLine("perf").parseArgs("write_bw", "-d", "siw0")
                .subcommand().commandSpec().userObject()).wire().isEmpty(), "no server: both ends here");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{"write_bw", "-d", "siw9"}, new PrintStream(out, true, UTF_8),
                new PrintStream(err, true, UTF_8));
        assertEquals(1, status);
        assertEquals("ENODEV: perftest: no RDMA device siw9 (devices: rxe0, rxe1, siw0, siw1)\n",
                err.toString(UTF_8));
    }

    @Test
    void atomicsAreRefusedInOneLineNamingWhy() {
        for (String tool : new String[]{"atomic_bw", "atomic_lat"}) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> run(tool, "-n", "10"));
            assertEquals(Errno.EOPNOTSUPP, e.errno());
            assertTrue(e.getMessage().endsWith("perftest: " + tool + " needs atomics, which siw0 (iWARP, atomic_cap"
                    + " NONE) does not have"), e.getMessage());
        }
        assertEquals(Errno.EOPNOTSUPP, assertThrows(ErrnoException.class,
                () -> run("send_bw", "-c", "UD", "-s", "1024", "-n", "10")).errno());
        assertTrue(core.cm().ids().isEmpty(), "nothing was set up");
    }
}
