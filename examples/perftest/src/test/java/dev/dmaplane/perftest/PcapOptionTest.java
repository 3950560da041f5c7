package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Predicate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code ./dmaplane perf TOOL --pcap FILE} (issue 14: "{@code --pcap FILE} on any run, in-process fabric too"): the
 * frames the run's HCAs send, written as they are on the wire and read back by the real {@code tshark}.
 */
@Timeout(120)
class PcapOptionTest {
    @TempDir
    Path dir;

    private static ExternalTool tshark() {
        return ExternalTool.require("tshark",
                "apt-get install tshark (Debian, Ubuntu), dnf install wireshark-cli (Fedora)");
    }

    private static PrintStream print(ByteArrayOutputStream o) {
        return new PrintStream(o, true, StandardCharsets.UTF_8);
    }

    /** tshark's fields of every frame in {@code file}, one row per frame. */
    private static List<String[]> decode(Path file, String... fields) throws Exception {
        List<String> args = new ArrayList<>(List.of("-r", file.toString(), "-T", "fields", "-E", "separator=|",
                "-e", "_ws.malformed"));
        for (String f : fields) {
            args.add("-e");
            args.add(f);
        }
        String out = tshark().run(Duration.ofSeconds(60), args.toArray(String[]::new));
        List<String[]> rows = out.lines().filter(l -> !l.isBlank()).map(l -> l.split("\\|", -1)).toList();
        assertTrue(rows.stream().allMatch(r -> r[0].isEmpty()), "no malformed frame:\n" + out);
        return rows;
    }

    private static long count(List<String[]> rows, Predicate<String[]> p) {
        return rows.stream().filter(p).count();
    }

    /**
     * write_bw between rxe0 and rxe1 of this process (the in-process fabric, path MTU 1024): rxe0's twenty 8 KiB RDMA
     * WRITEs, each a First (RETH with the DMA length), six Middle and a Last packet, and rxe1's ACKs, all RoCEv2 on
     * UDP 4791 (IBTA opcodes 6, 7, 8 and 17).
     */
    @Test
    void anInProcessRoceRunCapturesBothEnds() throws Exception {
        tshark();
        Path file = dir.resolve("rxe.pcap");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{"write_bw", "-s", "8192", "-n", "20", "--pcap", file.toString()},
                print(out), print(err));
        assertEquals(0, status, out.toString(StandardCharsets.UTF_8) + err.toString(StandardCharsets.UTF_8));
        assertTrue(out.toString(StandardCharsets.UTF_8).startsWith("capturing to " + file), "said first");

        List<String[]> rows = decode(file, "ip.src", "udp.dstport", "infiniband.bth.opcode", "infiniband.reth.dmalen");
        assertTrue(rows.stream().allMatch(r -> r[2].equals("4791") && !r[3].isEmpty()), "all RoCEv2");
        String client = rows.getFirst()[1];
        assertEquals(20, count(rows, r -> r[1].equals(client) && r[3].equals("6") && r[4].equals("8192")));
        assertEquals(120, count(rows, r -> r[1].equals(client) && r[3].equals("7")));
        assertEquals(20, count(rows, r -> r[1].equals(client) && r[3].equals("8")));
        long acks = count(rows, r -> !r[1].equals(client) && r[3].equals("17"));
        assertTrue(acks >= 1, "the responder's ACKs are captured too");
        assertEquals(160 + acks, rows.size(), "nothing else");
    }

    /**
     * write_bw between siw0 and siw1 of this process over the loopback's TCP: the MPA request and reply
     * (RFC 5044), then twenty tagged RDMA Write FPDUs (RFC 5040 opcode 0, DDP tagged, ULPDU = 14-byte header + 8192
     * bytes), as Wireshark's iWARP dissectors read them.
     */
    @Test
    void anInProcessSiwRunCapturesBothStreams() throws Exception {
        tshark();
        Path file = dir.resolve("siw.pcap");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{"write_bw", "-d", "siw0", "-s", "8192", "-n", "20", "--pcap",
                file.toString()}, print(out), print(err));
        assertEquals(0, status, out.toString(StandardCharsets.UTF_8) + err.toString(StandardCharsets.UTF_8));

        List<String[]> rows = decode(file, "ip.src", "iwarp_mpa.key.req", "iwarp_mpa.key.rep", "iwarp_rdma.opcode",
                "iwarp_ddp.tagged_flag", "iwarp_mpa.ulpdulength");
        String client = rows.stream().filter(r -> !r[2].isEmpty()).findFirst().orElseThrow()[1];
        assertEquals(1, count(rows, r -> !r[2].isEmpty()), "one MPA request");
        assertEquals(1, count(rows, r -> !r[3].isEmpty() && !r[1].equals(client)), "one MPA reply, from the other");
        assertEquals(20, count(rows, r -> r[1].equals(client) && r[4].equals("0x00") && r[5].equals("1")
                && r[6].equals("8206")), "the WRITEs");
    }

    /** A capture file that cannot be written: one line naming it, exit 1, no HCA thread left. */
    @Test
    void aFileThatCannotBeWrittenEndsTheRunInOneLine() {
        Path file = dir.resolve("no-such-dir").resolve("x.pcap");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{"write_bw", "-n", "5", "--pcap", file.toString()}, print(out), print(err));
        assertEquals(1, status);
        String e = err.toString(StandardCharsets.UTF_8);
        assertTrue(e.startsWith("EIO: rxe: cannot write the capture " + file), e);
        assertFalse(Files.exists(file));
        assertEquals(0, Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith("softroce") && t.isAlive()).count(), "no rxe thread left");
    }

    /**
     * In the runtime ({@code dmaplane:perf}, {@link PerfConfig#parse}) the HCAs are the runtime's: {@code --pcap} is
     * refused in one line pointing at the driver's own command, not ignored.
     */
    @Test
    void theRuntimesCommandRefusesItAndNamesTheDriversCommand() {
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> PerfConfig.parse("write_bw", "--pcap", "/tmp/x.pcap"));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("--pcap /tmp/x.pcap") && e.getMessage().contains("rxe:pcap FILE"),
                e.getMessage());
    }
}
