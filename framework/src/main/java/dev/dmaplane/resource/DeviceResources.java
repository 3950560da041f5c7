package dev.dmaplane.resource;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;

import java.util.ArrayList;
import java.util.List;

/**
 * The user contexts open on one device and the limits they are charged against (the RDMA cgroup's per-device
 * pool). When the device goes, {@link #disassociateAll()} cuts every context off.
 */
public final class DeviceResources {
    private final String device;
    private final Tracer tracer;
    private final List<UContext> contexts = new ArrayList<>();
    private ResourceLimits limits;
    private int objects;
    private int nextId;
    private boolean gone;

    public DeviceResources(String device, Tracer tracer, ResourceLimits limits) {
        this.device = ErrnoException.requireNonNull(device, "device");
        this.tracer = ErrnoException.requireNonNull(tracer, "tracer");
        this.limits = ErrnoException.requireNonNull(limits, "limits");
    }

    public String device() {
        return device;
    }

    /**
     * Opens a user context, charging one {@code hca_handle}.
     *
     * @throws ErrnoException {@code EAGAIN} over the context limit, {@code ENODEV} after the device went away
     */
    public synchronized UContext open() {
        if (gone) {
            throw new ErrnoException(Errno.ENODEV, device + " has been removed");
        }
        if (contexts.size() >= limits.maxContexts()) {
            throw new ErrnoException(Errno.EAGAIN, device + ": hca_handle limit " + limits.maxContexts() + " reached");
        }
        UContext c = new UContext(this, nextId++);
        contexts.add(c);
        return c;
    }

    /** Changes the limits ({@code echo ... > rdma.max}); existing charges above them stay until released. */
    public synchronized void setLimits(ResourceLimits newLimits) {
        this.limits = ErrnoException.requireNonNull(newLimits, "limits");
    }

    public synchronized ResourceLimits limits() {
        return limits;
    }

    /** Objects charged now ({@code rdma.current hca_object}). */
    public synchronized int objectCount() {
        return objects;
    }

    /** Contexts open now ({@code rdma.current hca_handle}), including disassociated ones not yet closed. */
    public synchronized List<UContext> contexts() {
        return List.copyOf(contexts);
    }

    /**
     * The device is leaving: every context is disassociated (waiting for its calls in flight) and no new one can
     * be opened.
     *
     * @return the number of objects destroyed
     */
    public int disassociateAll() {
        List<UContext> all;
        synchronized (this) {
            gone = true;
            all = List.copyOf(contexts);
        }
        int n = 0;
        for (UContext c : all) {
            int k = c.disassociate();
            n += k;
            tracer.emit(TraceKind.DISASSOCIATE, device, -1, 0, "context " + c.id() + ": " + k + " objects destroyed");
        }
        return n;
    }

    synchronized void chargeObject() {
        if (objects >= limits.maxObjects()) {
            throw new ErrnoException(Errno.EAGAIN, device + ": hca_object limit " + limits.maxObjects() + " reached");
        }
        objects++;
    }

    synchronized void unchargeObject() {
        objects--;
    }

    synchronized void forget(UContext c) {
        contexts.remove(c);
    }
}
