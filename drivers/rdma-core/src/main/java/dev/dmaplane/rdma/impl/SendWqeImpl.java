package dev.dmaplane.rdma.impl;

import dev.dmaplane.rdma.spi.HwAh;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.SendWr;

import java.lang.foreign.MemorySegment;

/** A queued send work request, with what was captured at post time. */
final class SendWqeImpl implements SendWqe {
    private final long seq;
    private final SendWr wr;
    private final boolean signaled;
    private final long length;
    private final MemorySegment inline;
    private final AhImpl ah;
    /** BIND_MW: the window's key and the region's lkey when posted ({@code mw_rkey}, {@code mr_lkey}). */
    final int mwRkeyAtPost;
    final int mrLkeyAtPost;
    boolean started;
    volatile boolean completed;

    SendWqeImpl(long seq, SendWr wr, boolean signaled, MemorySegment inline, AhImpl ah, int mwRkeyAtPost, int mrLkeyAtPost) {
        this.seq = seq;
        this.wr = wr;
        this.signaled = signaled;
        this.length = wr.totalLength();
        this.inline = inline;
        this.ah = ah;
        this.mwRkeyAtPost = mwRkeyAtPost;
        this.mrLkeyAtPost = mrLkeyAtPost;
    }

    @Override
    public long seq() {
        return seq;
    }

    @Override
    public SendWr wr() {
        return wr;
    }

    @Override
    public boolean signaled() {
        return signaled;
    }

    @Override
    public long length() {
        return length;
    }

    @Override
    public MemorySegment inlineData() {
        return inline;
    }

    @Override
    public HwAh ah() {
        return ah;
    }

    @Override
    public boolean isCompleted() {
        return completed;
    }

    @Override
    public String toString() {
        return "send wqe " + seq + " " + wr.opcode() + " wr_id " + wr.wrId();
    }
}
