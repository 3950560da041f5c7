package dev.dmaplane.rdma.testing;

import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WorkCompletion;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The verbs steps every RDMA test repeats, shared by rdma-core's tests (the synchronous loopback HCA) and the
 * drivers' tests (through rdma-core's tests jar): a QP brought through {@code ibv_modify_qp}'s connection
 * sequence (RESET, INIT, RTR, RTS, as {@code ib_modify_qp_is_ok} orders it), completions reaped with
 * {@code ibv_poll_cq} and an event read with {@code ibv_get_async_event}, each wait bounded by the caller: a
 * zero bound asks for what must already be there, as on the loopback HCA.
 */
public final class Verbs {
    private Verbs() {
    }

    /** Moves {@code qp} from RESET through {@code init} and {@code rtr} to {@code rts}. */
    public static void connect(QueuePair qp, QpAttr init, QpAttr rtr, QpAttr rts) {
        qp.modify(init);
        qp.modify(rtr);
        qp.modify(rts);
    }

    /**
     * Polls {@code cq} until {@code n} completions came, in the order they came; fails naming those that did if
     * {@code n} did not come within {@code timeout} ({@link Duration#ZERO}: at the first poll).
     */
    public static List<WorkCompletion> poll(CompletionQueue cq, int n, Duration timeout) {
        List<WorkCompletion> out = new ArrayList<>();
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            out.addAll(cq.poll(n - out.size()));
            if (out.size() >= n) {
                return out;
            }
            if (System.nanoTime() - deadline >= 0) {
                throw new AssertionError("expected " + n + " completions, got " + out);
            }
            Thread.onSpinWait();
        }
    }

    /**
     * The next async event of {@code ctx}; fails if none came within {@code timeout} ({@link Duration#ZERO}: if
     * none is queued now).
     */
    public static AsyncEvent event(VerbsContext ctx, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            Optional<AsyncEvent> e = ctx.pollAsyncEvent();
            if (e.isPresent()) {
                return e.get();
            }
            if (System.nanoTime() - deadline >= 0) {
                throw new AssertionError("no async event on " + ctx);
            }
            Thread.onSpinWait();
        }
    }
}
