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
