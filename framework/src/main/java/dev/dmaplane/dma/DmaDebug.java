package dev.dmaplane.dma;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.List;

/**
 * dma-debug ({@code CONFIG_DMA_API_DEBUG}): when enabled, every mapping records the stack of the call that made
 * it, device accesses in pass-through mode are checked against live mappings, and every misuse found is kept as
 * a {@link DmaDebugReport}, traced and logged. Misuse is refused either way (the call throws {@code EINVAL} and
 * changes nothing); enabling dma-debug adds the mapping sites and the pass-through access checks.
 */
public final class DmaDebug {
    private static final Logger LOG = LoggerFactory.getLogger(DmaDebug.class);
    /** Reports kept; older ones are dropped. */
    public static final int MAX_REPORTS = 4096;

    private final Tracer tracer;
    private volatile boolean enabled;
    private final List<DmaDebugReport> reports = new ArrayList<>();

    public DmaDebug(Tracer tracer, boolean enabled) {
        this.tracer = ErrnoException.requireNonNull(tracer, "tracer");
        this.enabled = enabled;
    }

    public boolean enabled() {
        return enabled;
    }

    /** Turns dma-debug on or off; mappings made while off have no recorded site. */
    public void setEnabled(boolean on) {
        this.enabled = on;
    }

    /** Captures the current stack as a mapping site when enabled, else null. */
    public Throwable captureSite() {
        return enabled ? new Throwable("mapped here") : null;
    }

    /** Records a finding. */
    public DmaDebugReport report(DmaDebugReport.Kind kind, String device, long address, long size, String message,
                                 Throwable mapSite) {
        DmaDebugReport r = new DmaDebugReport(kind, device, address, size, message, DmaDebugReport.siteOf(mapSite));
        synchronized (reports) {
            if (reports.size() == MAX_REPORTS) {
                reports.removeFirst();
            }
            reports.add(r);
        }
        tracer.emit(TraceKind.DMA_DEBUG, device, address, size, kind + ": " + message);
        LOG.warn("{}", r.describe());
        return r;
    }

    /** Findings so far, oldest first. */
    public List<DmaDebugReport> reports() {
        synchronized (reports) {
            return List.copyOf(reports);
        }
    }

    /** Findings of one kind. */
    public List<DmaDebugReport> reports(DmaDebugReport.Kind kind) {
        return reports().stream().filter(r -> r.kind() == kind).toList();
    }

    /** Forgets the findings so far. */
    public void clearReports() {
        synchronized (reports) {
            reports.clear();
        }
    }
}
