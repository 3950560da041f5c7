package dev.dmaplane.trace;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Enabled;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/** A work completion entering a CQ as JFR sees it, after rdmavt's {@code rvt_cq_enter} tracepoint ({@code trace_cq.h}). */
@Name("dev.dmaplane.WorkCompletion")
@Label("dmaplane work completion")
@Category({"dmaplane", "RDMA"})
@StackTrace(false)
@Enabled(false)
@Description("A work completion queued on a completion queue (what ibv_poll_cq returns)")
final class WorkCompletionJfrEvent extends jdk.jfr.Event {
    @Label("Device")
    String device;
    @Label("QP number")
    int qpn;
    @Label("Work request id")
    long wrId;
    @Label("Opcode")
    String opcode;
    @Label("Status")
    String status;
    @Label("Byte length")
    @DataAmount
    long byteLen;
}
