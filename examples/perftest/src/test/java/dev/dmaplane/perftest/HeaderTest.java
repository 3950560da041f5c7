package dev.dmaplane.perftest;

import dev.dmaplane.driver.softroce.SoftRoceDriver;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * perftest's header block and address lines in one process, field by field as perftest 6.29 prints them
 * ({@code perftest_parameters.c}: {@code ctx_print_test_info}; {@code perftest_communication.c}:
 * {@code ctx_print_pingpong_data}, {@code BASIC_ADDR_FMT}, {@code RDMA_FMT}, {@code READ_FMT}, {@code PERF_GID_FMT};
 * the PSNs of {@code set_up_connection}), on a fresh machine so that QPNs, rkeys and addresses are the same each run.
 */
@Timeout(120)
class HeaderTest {
    private Machine machine;
    private RdmaCore core;
    private SoftRoceDriver driver;

    @BeforeEach
    void boot() {
        machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
        core = new RdmaCore(machine.tracer());
        driver = new SoftRoceDriver(core);
        machine.devices().registerDriver(driver);
    }

    @AfterEach
    void shutdown() {
        machine.devices().unregisterDriver(driver);
        core.close();
        machine.close();
    }

    /** The rkeys of the last run's client and server (rxe draws their key byte at random). */
    private final int[] rkeys = new int[2];

    private String header(Random psns, String... args) {
        StringBuilder printed = new StringBuilder();
        Perftest.BeforeCheck keys = (cfg, c, s) -> {
            rkeys[0] = c.rkey();
            rkeys[1] = s.rkey();
        };
        PerfResult r = Perftest.run(machine, core, PerfConfig.parse(args), keys, psns, printed::append);
        assertEquals(r.report(), printed.toString(), "what was printed as it was made is the report");
        return r.report().substring(0, r.report().indexOf(Perftest.columns(r.config())));
    }

    /** A golden header of ib_write_bw: the PSNs are the first two of a generator seeded with 1. */
    @Test
    void writeBwPrintsPerftestsFieldsAndAddressLines() {
        Random seeded = new Random(1);
        int psn0 = seeded.nextInt(1 << 24);
        int psn1 = seeded.nextInt(1 << 24);
        String header = header(new Random(1), "write_bw", "-n", "10"); // the rkeys' key bytes are rxe's random draw
        String dashes = "-".repeat(87);
        String golden = dashes + "\n"
                + "                    RDMA_Write BW Test\n"
                + " Dual-port       : OFF\t\tDevice         : rxe0 -> rxe1\n"
                + " Number of qps   : 1\t\tTransport type : IB\n"
                + " Connection type : RC\t\tUsing SRQ      : OFF\n"
                + " PCIe relax order: OFF\t\tLock-free      : Unsupported\n"
                + " ibv_wr* API     : OFF\t\tUsing Enhanced Reorder      : OFF\n"
                + " TX depth        : 128\n"
                + " CQ Moderation   : 100\n"
                + " CQE Poll Batch  : 64\n"
                + " Mtu             : 1024[B]\n"
                + " Link type       : Ethernet\n"
                + " GID index       : 1\n"
                + " Max inline data : 0[B]\n"
                + " rdma_cm QPs\t : OFF\n"
                + " Data ex. method : Ethernet\n"
                + dashes + "\n"
                + " local address: LID 0000 QPN 0x0010 PSN 0x" + "%06x".formatted(psn0)
                + " RKey " + Header.cHex(rkeys[0], 8) + " VAddr 0x007efffffef000\n"
                + " GID: 00:00:00:00:00:00:00:00:00:00:255:255:10:00:00:04\n"
                + " remote address: LID 0000 QPN 0x0010 PSN 0x" + "%06x".formatted(psn1)
                + " RKey " + Header.cHex(rkeys[1], 8) + " VAddr 0x007efffffef000\n"
                + " GID: 00:00:00:00:00:00:00:00:00:00:255:255:10:00:00:05\n"
                + dashes + "\n";
        assertEquals(golden, header);
        for (int rkey : rkeys) { // MR index 1, rxe's key byte: six hex digits as perftest's %06x prints them
            assertTrue(Header.cHex(rkey, 8).matches("0x0001[0-9a-f]{2}"), Header.cHex(rkey, 8));
        }
    }

    /**
     * read_lat: {@code Outstand reads} instead of {@code Max inline data}, and {@code OUT} before the rkey; send_bw
     * with two QPs and a post list: every local line before the remote ones, no rkey or address (the SEND verb
     * names no remote memory), the receive depth, {@code Post List} in the title.
     */
    @Test
    void theFieldsFollowTheVerb() {
        String read = header(new Random(2), "read_lat", "-n", "10", "-I", "0");
        assertTrue(read.contains(" Outstand reads  : 16\n") && !read.contains("Max inline data")
                && !read.contains("CQ Moderation"), read);
        assertTrue(read.lines().anyMatch(l -> l.matches(" local address: LID 0000 QPN 0x0010 PSN 0x[0-9a-f]{6} OUT 0x10"
                + " RKey 0x[0-9a-f]{6} VAddr 0x[0-9a-f]{14}")), read);

        String send = header(new Random(3), "send_bw", "-n", "10", "-q", "2", "-l", "2", "-I", "64");
        assertTrue(send.contains("                    Send Post List BW Test\n"), send);
        assertTrue(send.contains(" Post List       : 2\n RX depth        : 128\n CQ Moderation   : 2\n"), send);
        assertTrue(send.contains(" Max inline data : 64[B]\n"), "the QPs' inline capacity: " + send);
        assertEquals(" local address: LID 0000 QPN 0x0011\n local address: LID 0000 QPN 0x0012\n"
                        + " remote address: LID 0000 QPN 0x0011\n remote address: LID 0000 QPN 0x0012\n",
                String.join("", send.lines().filter(l -> l.contains(" address: "))
                        .map(l -> l.replaceAll(" PSN 0x[0-9a-f]{6}$", "") + "\n").toList()),
                "the QPs after read_lat's on this machine, each line ending at its PSN");
    }

    /** The QPs start from the PSNs printed: first PSNs next to 2^24 wrap within the run, and its bytes check out. */
    @Test
    void theRandomPsnsAreTheQpsPsnsAndWrap() {
        Random nearWrap = new Random() {
            @Override
            public int nextInt(int bound) {
                return 0xfffff0;
            }
        };
        String h = header(nearWrap, "write_bw", "-s", "65536", "-n", "20");
        assertTrue(h.contains(" PSN 0xfffff0 RKey"), h);
    }

    /** C's {@code %#0Nx}: zero is all zeros without {@code 0x}; the width counts the prefix. */
    @Test
    void hexAsCsAlternateForm() {
        assertEquals("0000", Header.cHex(0, 4));
        assertEquals("0x01", Header.cHex(1, 4));
        assertEquals("0x0011", Header.cHex(0x11, 6));
        assertEquals("0x123456", Header.cHex(0x123456, 6));
        assertEquals("0x12345678", Header.cHex(0x12345678L, 8));
        assertEquals("0x007f0000001000", Header.cHex(0x7f0000001000L, 16));
    }

    /** The GID line prints each byte as a decimal of two digits at least. */
    @Test
    void gidBytesInDecimal() throws UnknownHostException {
        String line = Header.address(PerfConfig.parse("send_lat"), "local", 0, 0x11, 0x2b5e4b, 1, 0, 0,
                Gid.of(InetAddress.getByName("192.168.1.2")));
        assertEquals(" local address: LID 0000 QPN 0x0011 PSN 0x2b5e4b\n"
                + " GID: 00:00:00:00:00:00:00:00:00:00:255:255:192:168:01:02\n", line);
    }
}
