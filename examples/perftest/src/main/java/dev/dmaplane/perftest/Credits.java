package dev.dmaplane.perftest;

import dev.dmaplane.perftest.Perftest.Far;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;

import java.nio.ByteBuffer;
import java.util.List;

/**
 * perftest's receive credits for send_bw over iWARP between processes ({@code send_bw.c} sets {@code send_rcredit}
 * on {@code IBV_TRANSPORT_IWARP}; {@code ctx_alloc_credit}, {@code run_iter_bw}, {@code run_iter_bw_server}): iWARP
 * has no RNR NAK, a SEND that finds no receive ends the connection with a TERMINATE, so the receiver writes the
 * number of receives it completed into the sender's credit word every third of its receive queue
 * ({@code credit_cnt = rx_depth / 3}), and the sender keeps fewer than a receive queue's worth of sends beyond it.
 * The credit word of QP {@code q} is the first 8 bytes (big-endian) of the sender's target region of {@code q}, which
 * send_bw leaves unused, as perftest sends its credit buffer's address in place of the data buffer's; with a shared
 * receive queue, QP 0's word counts the receives of all. Counts run over the connection's life, across the sizes of
 * {@code -a}, so a credit that lands late still tells the truth.
 */
final class Credits {
    /** The work request id of a credit WRITE. */
    static final long WR_ID = -2L;

    private Credits() {
    }

    /** Whether a send_bw run from {@code sender} uses credits: on iWARP. */
    static boolean apply(PerfConfig cfg, Side sender) {
        return sender.iwarp && cfg.test() == PerfConfig.Test.SEND_BW;
    }

    /** Every how many receives the receiver gives a credit back. */
    static int every(Side receiver) {
        return Math.max(1, receiver.recvTarget / 3);
    }

    /** How many more sends the sender may post on QP {@code q}: perftest's {@code swindow < rx_depth}. */
    static long room(Side sender, boolean sharedRq, int q) {
        long credit = sender.readLong(sender.dst(sharedRq ? 0 : q));
        long sent = sharedRq ? Perftest.sum(sender.sendsTotal) : sender.sendsTotal[q];
        return sender.recvTarget - 1 - (sent - credit);
    }

    /**
     * The receiver counts a completed receive on QP {@code q} and, every {@link #every} of them, writes its count into
     * the sender's credit word with a signaled RDMA WRITE; returns whether it posted one.
     */
    static boolean received(Side receiver, Far sender, int q) {
        receiver.receivesTotal[q]++;
        boolean shared = receiver.sharedRq();
        long total = shared ? Perftest.sum(receiver.receivesTotal) : receiver.receivesTotal[q];
        if (total % every(receiver) != 0) {
            return false;
        }
        int w = shared ? 0 : q;
        receiver.write(receiver.src(w), ByteBuffer.allocate(8).putLong(total).array());
        receiver.qps[w].postSend(List.of(new SendWr.RdmaWrite(WR_ID, List.of(receiver.sge(receiver.src(w), 8)),
                SendFlags.SIGNALED, sender.dst(w), sender.rkey())));
        return true;
    }
}
