package dev.dmaplane.trace;

import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The trace ring (a bounded ring like ftrace's, oldest overwritten), its subscribers, and the JFR mirror. */
class TracerTest {

    @Test
    void ringKeepsTheNewestEventsInOrderWithoutGaps() {
        Tracer t = new Tracer(8);
        for (int i = 0; i < 20; i++) {
            t.emit(TraceKind.MAP, "dev", i, 4096, "n" + i);
        }
        List<TraceEvent> all = t.snapshot();
        assertEquals(8, all.size());
        assertEquals(13, all.getFirst().seq());
        assertEquals(20, all.getLast().seq());
        assertEquals(List.of(18L, 19L, 20L), t.since(17).stream().map(TraceEvent::seq).toList());
        assertEquals(2, t.select(e -> e.address() % 4 == 0).size(), "addresses 12 and 16");
        assertTrue(all.getLast().toString().contains("MAP dev addr=0x13 len=4096 n19"));
    }

    @Test
    void subscribersSeeEveryEventUntilTheyLeaveAndDisabledTracingRecordsNothing() throws Exception {
        Tracer t = new Tracer(16);
        List<TraceKind> seen = new ArrayList<>();
        AutoCloseable sub = t.subscribe(e -> seen.add(e.kind()));
        t.emit(TraceKind.PIN, "mm", 0, 4096, "");
        sub.close();
        t.emit(TraceKind.UNPIN, "mm", 0, 4096, "");
        assertEquals(List.of(TraceKind.PIN), seen);
        t.setEnabled(false);
        assertNull(t.emit(TraceKind.MAP, "x", 0, 0, ""));
        assertEquals(2, t.lastSeq());
        assertThrows(IllegalArgumentException.class, () -> new Tracer(12));
    }

    @Test
    void flightRecordingsCarryTheEvents(@TempDir Path dir) throws Exception {
        Tracer t = new Tracer(16);
        Path file = dir.resolve("trace.jfr");
        try (Recording r = new Recording()) {
            r.enable("dev.dmaplane.Trace");
            r.start();
            t.emit(TraceKind.FAULT, "0000:03:00.0", 0x1000, 8, "write domain 6: not mapped");
            r.stop();
            r.dump(file);
        }
        List<RecordedEvent> events = RecordingFile.readAllEvents(file).stream()
                .filter(e -> e.getEventType().getName().equals("dev.dmaplane.Trace")).toList();
        assertEquals(1, events.size());
        assertEquals("FAULT", events.getFirst().getString("kind"));
        assertEquals("0000:03:00.0", events.getFirst().getString("device"));
        assertEquals(0x1000, events.getFirst().getLong("address"));
    }
}
