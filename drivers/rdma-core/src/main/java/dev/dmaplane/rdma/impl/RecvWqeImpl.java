package dev.dmaplane.rdma.impl;

import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.verbs.RecvWr;

/** A queued receive work request. */
final class RecvWqeImpl implements RecvWqe {
    private final long seq;
    private final RecvWr wr;
    private final long length;
    private final boolean fromSrq;

    RecvWqeImpl(long seq, RecvWr wr, boolean fromSrq) {
        this.seq = seq;
        this.wr = wr;
        this.length = wr.totalLength();
        this.fromSrq = fromSrq;
    }

    @Override
    public long seq() {
        return seq;
    }

    @Override
    public RecvWr wr() {
        return wr;
    }

    @Override
    public long length() {
        return length;
    }

    @Override
    public boolean fromSrq() {
        return fromSrq;
    }

    @Override
    public String toString() {
        return "recv wqe " + seq + " wr_id " + wr.wrId();
    }
}
