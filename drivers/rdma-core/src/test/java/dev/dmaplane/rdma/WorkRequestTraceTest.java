package dev.dmaplane.rdma;

import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.trace.TraceEvent;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import jdk.jfr.Configuration;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.rdma.verbs.SendFlags.SOLICITED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Work requests in the trace: a post ({@code ibv_post_send(3)}, {@code ibv_post_recv(3)}) and a completion entering
 * the CQ, with the fields of rdmavt's tracepoints {@code rvt_post_one_wr} ({@code drivers/infiniband/sw/rdmavt/trace_tx.h})
 * and {@code rvt_cq_enter} ({@code trace_cq.h}): in the trace ring when asked, as typed JFR events
 * ({@code dev.dmaplane.WorkRequest}, {@code dev.dmaplane.WorkCompletion}) in a recording, and nowhere otherwise.
 */
class WorkRequestTraceTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private final Fixture f = new Fixture();
    private final Tracer tracer = f.machine.tracer();
    private final VerbsContext ctx = f.open();
    private final ProtectionDomain pd = ctx.allocPd();
    private final CompletionQueue cq = ctx.createCq(64, null, 0);
    private final long buf = f.alloc(4 * PAGE);
    private final MemoryRegion mr = pd.regMr(buf, 4 * PAGE, Fixture.ALL_REMOTE);
    private final QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 16);

    @AfterEach
    void close() {
        f.close();
    }

    private Sge sge(long off, long len) {
        return new Sge(buf + off, len, mr.lkey());
    }

    /** One receive of 300 bytes in two SGEs, one signalled send of 100 bytes in two SGEs, both completions polled. */
    private void sendAndReceive() {
        f.write(buf, new byte[100]);
        p[1].postRecv(RecvWr.of(77, sge(PAGE, 100), sge(2 * PAGE, 200)));
        p[0].postSend(new SendWr.Send(11, List.of(sge(0, 40), sge(40, 60)), SIGNALED | SOLICITED, null));
        assertEquals(2, Fixture.poll(cq, 2).size());
    }

    @Test
    void theRingShowsPostsAndCompletionsWhenAsked() {
        tracer.setWorkRequests(true);
        long before = tracer.lastSeq();
        sendAndReceive();
        List<TraceEvent> posts = tracer.since(before).stream().filter(e -> e.kind() == TraceKind.POST).toList();
        List<TraceEvent> done = tracer.since(before).stream().filter(e -> e.kind() == TraceKind.COMPLETION).toList();
        assertEquals(2, posts.size(), posts.toString());
        assertEquals("rxe0", posts.get(0).device());
        assertEquals(300, posts.get(0).length());
        assertEquals("qpn=" + p[1].qpNum() + " recv RECV wr_id=77 num_sge=2 flags=0x0", posts.get(0).detail());
        assertEquals(100, posts.get(1).length());
        assertEquals("qpn=" + p[0].qpNum() + " send SEND wr_id=11 num_sge=2 flags=0x"
                + Integer.toHexString(SIGNALED | SOLICITED), posts.get(1).detail());
        assertEquals(2, done.size(), done.toString());
        assertTrue(done.stream().anyMatch(e -> e.detail().equals("qpn=" + p[0].qpNum() + " SEND wr_id=11 status=SUCCESS")
                && e.length() == 100), done.toString());
        assertTrue(done.stream().anyMatch(e -> e.detail().equals("qpn=" + p[1].qpNum() + " RECV wr_id=77 status=SUCCESS")
                && e.length() == 100), done.toString());
    }

    @Test
    void aFlightRecordingGetsTypedFieldsEqualToWhatWasPosted(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("wr.jfr");
        try (Recording r = new Recording()) {
            r.enable("dev.dmaplane.WorkRequest");
            r.enable("dev.dmaplane.WorkCompletion");
            r.start();
            assertTrue(tracer.tracesPosts());
            assertTrue(tracer.tracesCompletions());
            sendAndReceive();
            r.stop();
            r.dump(file);
        }
        List<RecordedEvent> all = RecordingFile.readAllEvents(file);
        List<RecordedEvent> posts = all.stream()
                .filter(e -> e.getEventType().getName().equals("dev.dmaplane.WorkRequest")).toList();
        assertEquals(2, posts.size(), posts.toString());
        RecordedEvent recv = posts.stream().filter(e -> e.getString("queue").equals("recv")).findFirst().orElseThrow();
        assertEquals("rxe0", recv.getString("device"));
        assertEquals(p[1].qpNum(), recv.getInt("qpn"));
        assertEquals("RECV", recv.getString("opcode"));
        assertEquals(77, recv.getLong("wrId"));
        assertEquals(300, recv.getLong("length"));
        assertEquals(2, recv.getInt("numSge"));
        assertEquals(0, recv.getInt("flags"));
        RecordedEvent send = posts.stream().filter(e -> e.getString("queue").equals("send")).findFirst().orElseThrow();
        assertEquals(p[0].qpNum(), send.getInt("qpn"));
        assertEquals("SEND", send.getString("opcode"));
        assertEquals(11, send.getLong("wrId"));
        assertEquals(100, send.getLong("length"));
        assertEquals(2, send.getInt("numSge"));
        assertEquals(SIGNALED | SOLICITED, send.getInt("flags"));

        List<RecordedEvent> done = all.stream()
                .filter(e -> e.getEventType().getName().equals("dev.dmaplane.WorkCompletion")).toList();
        assertEquals(2, done.size(), done.toString());
        RecordedEvent sent = done.stream().filter(e -> e.getLong("wrId") == 11).findFirst().orElseThrow();
        assertEquals(p[0].qpNum(), sent.getInt("qpn"));
        assertEquals("SEND", sent.getString("opcode"));
        assertEquals("SUCCESS", sent.getString("status"));
        assertEquals(100, sent.getLong("byteLen"));
        assertEquals("rxe0", sent.getString("device"));
        RecordedEvent received = done.stream().filter(e -> e.getLong("wrId") == 77).findFirst().orElseThrow();
        assertEquals(p[1].qpNum(), received.getInt("qpn"));
        assertEquals("RECV", received.getString("opcode"));
        assertEquals(100, received.getLong("byteLen"));
        assertTrue(all.stream().noneMatch(e -> e.getEventType().getName().equals("dev.dmaplane.Trace")
                && (e.getString("kind").equals("POST") || e.getString("kind").equals("COMPLETION"))),
                "work requests are not duplicated as generic trace events");
    }

    /**
     * The work-request events are off until a recording names them, as a kernel tracepoint is off until enabled
     * ({@code Documentation/trace/events.rst}): a recording with the JDK's own settings, which know nothing of
     * them, does not make the post path trace.
     */
    @Test
    void aRecordingWithTheJdkSettingsAloneRecordsNoWorkRequest(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("profile.jfr");
        try (Recording r = new Recording(Configuration.getConfiguration("profile"))) {
            r.start();
            assertFalse(tracer.tracesPosts(), "nothing asked for posts");
            assertFalse(tracer.tracesCompletions(), "nothing asked for completions");
            sendAndReceive();
            r.stop();
            r.dump(file);
        }
        assertTrue(RecordingFile.readAllEvents(file).stream().noneMatch(e -> e.getEventType().getName()
                .startsWith("dev.dmaplane.Work")));
    }

    @Test
    void withTracingOffNothingIsRecorded(@TempDir Path dir) throws Exception {
        assertFalse(tracer.tracesPosts());
        assertFalse(tracer.tracesCompletions());
        long before = tracer.lastSeq();
        Path file = dir.resolve("off.jfr");
        try (Recording r = new Recording()) {
            r.enable("dev.dmaplane.Trace");
            r.disable("dev.dmaplane.WorkRequest");
            r.disable("dev.dmaplane.WorkCompletion");
            r.start();
            assertFalse(tracer.tracesPosts(), "a recording without the work request events does not ask for them");
            sendAndReceive();
            r.stop();
            r.dump(file);
        }
        assertTrue(tracer.since(before).stream()
                .noneMatch(e -> e.kind() == TraceKind.POST || e.kind() == TraceKind.COMPLETION));
        assertTrue(RecordingFile.readAllEvents(file).stream().noneMatch(e -> e.getEventType().getName()
                .startsWith("dev.dmaplane.Work")));
        tracer.setWorkRequests(true);
        tracer.setEnabled(false);
        assertFalse(tracer.tracesPosts(), "a disabled trace ring asks for nothing");
        long off = tracer.lastSeq();
        sendAndReceive();
        assertEquals(off, tracer.lastSeq());
    }
}
