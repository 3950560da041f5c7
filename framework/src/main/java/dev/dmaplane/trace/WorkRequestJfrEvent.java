package dev.dmaplane.trace;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Enabled;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/** A posted work request as JFR sees it, after rdmavt's {@code rvt_post_one_wr} tracepoint ({@code trace_tx.h}). */
@Name("dev.dmaplane.WorkRequest")
@Label("dmaplane work request posted")
@Category({"dmaplane", "RDMA"})
@StackTrace(false)
@Enabled(false)
@Description("A send or receive work request posted to a queue pair (ibv_post_send / ibv_post_recv)")
final class WorkRequestJfrEvent extends jdk.jfr.Event {
    @Label("Device")
    String device;
    @Label("QP number")
    int qpn;
    @Label("Queue")
    @Description("send or recv")
    String queue;
    @Label("Opcode")
    String opcode;
    @Label("Work request id")
    long wrId;
    @Label("Total length")
    @DataAmount
    long length;
    @Label("SGEs")
    int numSge;
    @Label("Send flags")
    int flags;
}
