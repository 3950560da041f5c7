package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.accel.AccelDevice;
import dev.dmaplane.accel.AccelLimits;
import dev.dmaplane.accel.spi.AccelDeviceHandle;
import dev.dmaplane.accel.spi.AccelProvider;
import dev.dmaplane.accel.spi.EngineInfo;
import dev.dmaplane.accel.spi.VramInfo;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.resource.DeviceResources;
import dev.dmaplane.resource.ResourceLimits;
import dev.dmaplane.resource.UContext;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.Objects;

/**
 * One registered accelerator ({@code struct drm_device}): the provider, its VRAM manager and {@link Ttm}, and the
 * contexts opened on it ({@link DeviceResources}). Unregistering disassociates every context, waits (bounded)
 * for every backing still behind a fence, and leaves nothing allocated, pinned or mapped.
 */
final class DeviceImpl implements AccelDevice, AccelDeviceHandle {
    private static final Logger LOG = LoggerFactory.getLogger(DeviceImpl.class);
    /** How long the core waits for a move or an object's fences before it gives up with {@code ETIME}. */
    static final Duration FENCE_TIMEOUT = Duration.ofSeconds(10);

    private final CoreImpl core;
    private final String name;
    private final AccelProvider provider;
    private final VramInfo vram;
    private final List<EngineInfo> engines;
    private final Tracer tracer;
    private final Ttm ttm;
    private final Prime prime;
    private final DeviceResources resources;
    private final List<ContextImpl> contexts = new CopyOnWriteArrayList<>();
    private volatile AccelLimits limits = AccelLimits.UNLIMITED;
    private boolean unregistered;

    DeviceImpl(CoreImpl core, Machine machine, String name, AccelProvider provider) {
        this.core = core;
        this.name = name;
        this.provider = provider;
        this.vram = Objects.requireNonNull(provider.vram(), "provider.vram()");
        this.engines = List.copyOf(provider.engines());
        ErrnoException.check(!engines.isEmpty(), Errno.EINVAL, provider.driverName() + ": an accelerator needs an engine");
        ErrnoException.check(provider.dmaDevice() != null, Errno.EINVAL, provider.driverName() + ": no DMA device");
        DmaApi dma = provider.dmaDevice().dma();
        this.tracer = machine.tracer();
        VramManager vramManager = new VramManager(P2pDma.of(machine), vram);
        // what DRM drivers do at probe (amdgpu_device_init, xe_device_probe): GEM objects map into few segments
        dma.setMaxSegmentSize(Integer.MAX_VALUE);
        this.ttm = new Ttm(name, provider, vramManager, machine.memory(), dma, tracer, FENCE_TIMEOUT);
        this.prime = new Prime(machine, name, vram, ttm);
        ttm.setPrime(prime);
        this.resources = new DeviceResources(name, tracer, ResourceLimits.UNLIMITED);
        tracer.emit(TraceKind.DEVICE_ADD, name, -1, vram.totalSize(), provider.driverName() + " on " + vram.function().bdf()
                + String.format(": VRAM %#x bytes, %#x visible through BAR%d", vram.totalSize(), vram.visibleSize(), vram.bar()));
    }

    Tracer tracer() {
        return tracer;
    }

    AccelProvider provider() {
        return provider;
    }

    Prime prime() {
        return prime;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public String driverName() {
        return provider.driverName();
    }

    @Override
    public VramInfo vram() {
        return vram;
    }

    @Override
    public List<EngineInfo> engines() {
        return engines;
    }

    @Override
    public long vramAvailable() {
        ttm.lock.lock();
        try {
            ttm.reap();
            return ttm.vram().available();
        } finally {
            ttm.lock.unlock();
        }
    }

    @Override
    public AccelContext open() {
        UContext u = resources.open();
        try {
            ContextImpl c = new ContextImpl(this, ttm, u, limits);
            contexts.add(c);
            return c;
        } catch (RuntimeException e) {
            u.close();
            throw e;
        }
    }

    @Override
    public List<AccelContext> contexts() {
        return contexts.stream().filter(c -> c.uctx().state() == UContext.State.LIVE).map(c -> (AccelContext) c).toList();
    }

    /** A context's file is released: it leaves the listing. */
    void forget(ContextImpl c) {
        contexts.remove(c);
    }

    @Override
    public void setLimits(AccelLimits limits) {
        this.limits = Objects.requireNonNull(limits, "limits");
    }

    @Override
    public AccelLimits limits() {
        return limits;
    }

    @Override
    public void unregister() {
        synchronized (this) {
            if (unregistered) {
                return;
            }
            unregistered = true;
        }
        core.remove(this);
        int leaked = prime.stop("device " + name + " unregistered");
        if (leaked > 0) {
            LOG.warn("{}: {} mapping(s) of exported objects were still held by importers and were torn down", name, leaked);
        }
        int objects = resources.disassociateAll();
        int left = ttm.drain();
        if (left > 0) {
            LOG.error("{}: {} backing(s) still behind unsignalled fences after {}; they are freed when those signal",
                    name, left, FENCE_TIMEOUT);
        }
        tracer.emit(TraceKind.DEVICE_REMOVE, name, -1, 0, "unregistered: " + objects + " object(s) of "
                + resources.contexts().size() + " context(s) destroyed");
    }

    @Override
    public String toString() {
        return name + " (" + provider.driverName() + ")";
    }
}
