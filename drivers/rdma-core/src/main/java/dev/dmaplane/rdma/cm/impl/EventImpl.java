package dev.dmaplane.rdma.cm.impl;

import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;

/** One {@code struct rdma_cm_event} queued on a channel. */
final class EventImpl implements CmEvent {
    private final ChannelImpl channel;
    private final CmEventType type;
    private final IdImpl id;
    private final IdImpl listen;
    private final int status;
    private final ConnParam param;
    private boolean acked;

    EventImpl(ChannelImpl channel, CmEventType type, IdImpl id, IdImpl listen, int status, ConnParam param) {
        this.channel = channel;
        this.type = type;
        this.id = id;
        this.listen = listen;
        this.status = status;
        this.param = param == null ? new ConnParam(null, 0, 0, 0, 0, 0, false, 0) : param;
    }

    @Override
    public CmEventType type() {
        return type;
    }

    @Override
    public CmId id() {
        return id;
    }

    @Override
    public CmId listenId() {
        return listen;
    }

    IdImpl listenImpl() {
        return listen;
    }

    IdImpl idImpl() {
        return id;
    }

    @Override
    public int status() {
        return status;
    }

    @Override
    public ConnParam param() {
        return param;
    }

    @Override
    public synchronized void ack() {
        acked = true;
    }

    synchronized boolean acked() {
        return acked;
    }

    @Override
    public String toString() {
        return type + " status " + status + " on " + id;
    }
}
