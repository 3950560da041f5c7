package dev.dmaplane.launcher;

import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Flight recordings of the OSGi runtime: {@code dmaplane shell --jfr FILE CMD} boots the runtime in Felix with a
 * JDK Flight Recorder recording running (JFR instruments the framework's {@code jdk.jfr.Event} subclass, whose
 * calls into {@code jdk.jfr.internal.event} a bundle must be able to link), and the file it writes reads back with
 * {@code jdk.jfr.consumer} as {@code jfr print} reads it: dmaplane's trace events with their fields.
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class JfrIT {
    @TempDir
    Path tmp;

    @Test
    void aRecordingOfTheRuntimeHoldsDmaplaneTraceEventsWithTheirFields() throws Exception {
        Path file = tmp.resolve("shell.jfr");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = Main.run(new String[]{"shell", "--jfr", file.toString(), "--work", tmp.resolve("work").toString(),
                "--dist", RuntimeIT.DIST.toString(), "dmaplane:devices"}, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        assertEquals(0, code, err.toString(StandardCharsets.UTF_8));
        assertTrue(out.toString(StandardCharsets.UTF_8).contains("flight recording written to " + file), out.toString());
        assertTrue(Files.size(file) > 0);

        List<RecordedEvent> trace = RecordingFile.readAllEvents(file).stream()
                .filter(e -> e.getEventType().getName().equals(FlightRecording.TRACE_EVENT)).toList();
        assertFalse(trace.isEmpty(), "the machine's boot traces events (binds, maps)");
        for (RecordedEvent e : trace) {
            assertFalse(e.getString("kind").isEmpty(), e.toString());
            assertTrue(e.hasField("device") && e.hasField("address") && e.hasField("length") && e.hasField("detail"),
                    e.toString());
        }
        assertTrue(trace.stream().anyMatch(e -> e.getString("device") != null && e.getString("device").startsWith("0000:")),
                "events name the PCI function they concern");

        // the JDK's own jfr tool is the oracle for the file format
        Path jfr = Path.of(System.getProperty("java.home"), "bin", "jfr");
        Process p = new ProcessBuilder(jfr.toString(), "print", "--events", FlightRecording.TRACE_EVENT, file.toString())
                .redirectErrorStream(true).start();
        String printed = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "jfr print finished");
        assertEquals(0, p.exitValue(), printed);
        assertTrue(printed.contains(FlightRecording.TRACE_EVENT + " {") && printed.contains("kind = ")
                && printed.contains("device = \"0000:"), printed.lines().limit(20).toList().toString());
    }

    /**
     * {@code demo --jfr FILE}: the GPUDirect demo's RDMA reads and writes over Soft-RoCE appear as posted work
     * requests and their completions, with the fields of rdmavt's {@code rvt_post_one_wr} and {@code rvt_cq_enter}
     * tracepoints, each completion answering a post of the same QP and wr_id.
     */
    @Test
    void aRecordingOfTheDemoHoldsItsWorkRequestsAndTheirCompletions() throws Exception {
        Path file = tmp.resolve("demo.jfr");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = Main.run(new String[]{"demo", "--jfr", file.toString(), "--work", tmp.resolve("work").toString(),
                "--dist", RuntimeIT.DIST.toString()}, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        assertEquals(0, code, out + "\n" + err);
        List<RecordedEvent> all = RecordingFile.readAllEvents(file);
        List<RecordedEvent> posts = all.stream()
                .filter(e -> e.getEventType().getName().equals(FlightRecording.WORK_REQUEST_EVENT)).toList();
        List<RecordedEvent> done = all.stream()
                .filter(e -> e.getEventType().getName().equals(FlightRecording.WORK_COMPLETION_EVENT)).toList();
        assertFalse(posts.isEmpty(), "the demo posts RDMA reads and writes");
        for (RecordedEvent p : posts) {
            assertTrue(p.getString("device").startsWith("rxe"), p.toString());
            assertEquals("send", p.getString("queue"), p.toString());
            assertTrue(Set.of("RDMA_WRITE", "RDMA_READ").contains(p.getString("opcode")), p.toString());
            assertEquals(1 << 1, p.getInt("flags"), "IBV_SEND_SIGNALED, as Hca posts them: " + p);
            assertTrue(p.getInt("numSge") >= 1 && p.getLong("length") > 0, p.toString());
            RecordedEvent c = done.stream().filter(e -> e.getInt("qpn") == p.getInt("qpn")
                    && e.getLong("wrId") == p.getLong("wrId")).findFirst().orElseThrow(() -> new AssertionError(
                    "no completion for " + p));
            assertEquals(p.getString("opcode"), c.getString("opcode"), c.toString());
            assertEquals("SUCCESS", c.getString("status"), c.toString());
            assertEquals(p.getString("device"), c.getString("device"), c.toString());
        }

        Path jfr = Path.of(System.getProperty("java.home"), "bin", "jfr");
        Process p = new ProcessBuilder(jfr.toString(), "print", "--events", FlightRecording.WORK_REQUEST_EVENT,
                file.toString()).redirectErrorStream(true).start();
        String printed = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "jfr print finished");
        assertEquals(0, p.exitValue(), printed);
        assertTrue(printed.contains(FlightRecording.WORK_REQUEST_EVENT + " {") && printed.contains("wrId = ")
                && printed.contains("opcode = \"RDMA_"), printed.lines().limit(20).toList().toString());
    }

    @Test
    void aRecordingIntoAMissingDirectoryIsRefusedBeforeAnythingBoots() throws Exception {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = Main.run(new String[]{"shell", "--jfr", tmp.resolve("no/such/dir/x.jfr").toString(), "dmaplane:devices"},
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        assertEquals(2, code);
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("its directory does not exist"), err.toString());
    }
}
