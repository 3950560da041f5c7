package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.SendWqe;

/**
 * A message the transmit engine cuts into DDP segments, and how far it got ({@code struct siw_wqe}'s
 * {@code bytes} and the TX context's {@code bytes_unsent} in {@code siw_qp_tx.c}): a SEND or RDMA WRITE of a work
 * request, or the Read Response to an inbound READ. Tagged messages carry STag and tagged offset, untagged ones queue
 * number, MSN and the STag a SEND with Invalidate names.
 */
final class TxMessage {
    final int opcode;
    final boolean tagged;
    /** Tagged: the sink STag; untagged: the STag to invalidate (0 when none). */
    final int stag;
    /** Tagged: the tagged offset of the first byte; untagged: the MSN. */
    final long to;
    final long length;
    /** The work request a SEND or WRITE carries, and its place in the completion order; null for a response. */
    final SendWqe wqe;
    final Pending pending;
    /** The response's source; null for a SEND or WRITE. */
    final ReadResponse response;
    /** Bytes cut into segments so far. */
    long off;
    /** The leases of its buffers during the engine's current pass. */
    final SgeLeases leases;

    private TxMessage(int opcode, boolean tagged, int stag, long to, long length, SendWqe wqe, Pending pending,
                      ReadResponse response) {
        this.opcode = opcode;
        this.tagged = tagged;
        this.stag = stag;
        this.to = to;
        this.length = length;
        this.wqe = wqe;
        this.pending = pending;
        this.response = response;
        this.leases = new SgeLeases(wqe == null ? 1 : Math.max(1, wqe.wr().sgList().size()));
    }

    static TxMessage send(SendWqe w, Pending p, int opcode, int invStag, int msn) {
        return new TxMessage(opcode, false, invStag, msn, w.length(), w, p, null);
    }

    static TxMessage write(SendWqe w, Pending p, int rkey, long remoteAddr) {
        return new TxMessage(Iwarp.OP_WRITE, true, rkey, remoteAddr, w.length(), w, p, null);
    }

    static TxMessage response(ReadResponse r) {
        return new TxMessage(Iwarp.OP_READ_RESPONSE, true, r.sinkStag(), r.sinkTo(),
                Integer.toUnsignedLong(r.length()), null, null, r);
    }
}
