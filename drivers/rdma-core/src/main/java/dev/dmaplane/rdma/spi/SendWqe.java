package dev.dmaplane.rdma.spi;

import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WrOpcode;
import org.osgi.annotation.versioning.ProviderType;

import java.lang.foreign.MemorySegment;

/**
 * A send work queue entry: a validated work request as the core queued it. The provider starts entries in order
 * ({@link HwQp#nextSend()}) and completes them in order ({@link HwQp#completeSend}).
 */
@ProviderType
public interface SendWqe {
    /** Position in the send queue since the QP was created. */
    long seq();

    /** The work request as posted. */
    SendWr wr();

    default WrOpcode opcode() {
        return wr().opcode();
    }

    default long wrId() {
        return wr().wrId();
    }

    /** Whether completing it successfully produces a CQE ({@code SIGNALED} or {@code sq_sig_all}). */
    boolean signaled();

    default boolean fenced() {
        return (wr().sendFlags() & SendFlags.FENCE) != 0;
    }

    default boolean solicited() {
        return (wr().sendFlags() & SendFlags.SOLICITED) != 0;
    }

    /** Bytes of the request's scatter/gather list. */
    long length();

    /**
     * For an inline request, the bytes copied from the caller's memory when it was posted; null otherwise (the
     * data is then read through the SGEs' memory regions when the request is processed).
     */
    MemorySegment inlineData();

    /** The resolved address handle of a UD send, else null. */
    HwAh ah();

    /** Whether it was completed (or flushed). */
    boolean isCompleted();
}
