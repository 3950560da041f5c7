package dev.dmaplane.driver.siw;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A connection's transmit state ({@code struct siw_iwarp_tx}, a QP's {@code tx_ctx}): the FPDUs built and not yet
 * taken by TCP (a send that would block leaves the rest here, a partial FPDU included, and resumes from it), the
 * message being cut into DDP segments, what completes once its last byte is taken, and which thread runs the engine
 * ({@code tx_ctx.in_use}): the poster, when the send queue was idle, or the device's TX thread. One per connection;
 * the fields without a modifier belong to the thread holding {@link #inUse}.
 */
final class TxCtx {
    /** Whether a thread runs the engine on this connection; taking it gives that thread the fields below. */
    final AtomicBoolean inUse = new AtomicBoolean();
    /** Set by whoever wants the engine run: the holder runs it once more before it lets go. */
    volatile boolean again;
    /** The stream took less than offered: the engine resumes on write space ({@code sk_write_space}). */
    volatile boolean blocked;
    /** Why the stream failed under a thread that hands the failure to the TX thread (a poster), or null. */
    volatile Exception failure;

    /** FPDUs from {@link #head} (the next byte TCP has not taken) to {@link #pos} (where the next one starts). */
    ByteBuffer out;
    MemorySegment outSeg;
    /** A view of {@link #out} whose position and limit the stream's writes move. */
    ByteBuffer view;
    int head;
    int pos;
    /** The message being cut into segments, or null. */
    TxMessage msg;
    /** A SEND or WRITE whose last FPDU is in the buffer: it completes once TCP took it, or null. */
    Pending owed;
    /**
     * {@code siw_qp_sq_process} failed: a READ source refused while its response was built, or a request of the send
     * queue that failed locally ({@link #failed}). The drop leaves the QP in RTS ({@code siw_qp_cm_drop(qp, 0)}
     * without {@code siw_qp_llp_close}).
     */
    volatile boolean txError;
    /** The send work request that failed locally, completed at the drop; null for a READ response. */
    Pending failed;
    /** The TX thread's registration for write space (its thread only). */
    SelectionKey key;

    /** Drops the message in progress (done, failed or flushed), closing its leases. */
    void endMessage() {
        TxMessage m = msg;
        if (m != null) {
            msg = null;
            m.leases.close();
        }
    }

    /** The engine's pass ends: no lease stays open past it (the next pass takes them again). */
    void endPass() {
        TxMessage m = msg;
        if (m != null) {
            m.leases.close();
        }
    }

    /** The buffer, made on first use: {@code capacity} bytes, direct so that the stream's write takes them in place. */
    void allocate(int capacity) {
        if (out == null) {
            out = ByteBuffer.allocateDirect(capacity);
            outSeg = MemorySegment.ofBuffer(out);
            view = out.duplicate();
        }
    }
}
