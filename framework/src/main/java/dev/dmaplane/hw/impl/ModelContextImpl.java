package dev.dmaplane.hw.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDma;
import dev.dmaplane.hw.RegisterBlock;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.MmioHandler;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.PciFunction;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** One function's context for its model: what the model registered, so that the machine can undo all of it. */
final class ModelContextImpl implements ModelContext {
    private record Registration(Bar.Mmio bar, MmioHandler handler) {
    }

    private final PciFunction fn;
    private final String model;
    private final ModelDma dma;
    private final List<Registration> registrations = new ArrayList<>();
    private final Set<Integer> claimed = new HashSet<>();
    private boolean closed;
    private int dmaAddressBits = 64;

    ModelContextImpl(PciFunction fn, String model) {
        this.fn = fn;
        this.model = model;
        this.dma = ModelDma.of(fn);
    }

    @Override
    public PciFunction function() {
        return fn;
    }

    @Override
    public Map<String, String> properties() {
        return fn.properties();
    }

    @Override
    public synchronized void registers(int index, MmioHandler registers) {
        requireOpen();
        if (registers == null) {
            throw new ErrnoException(Errno.EINVAL, where(index) + ": the register handler is null");
        }
        Bar bar = bar(index);
        if (!(bar.backing() instanceof Bar.Mmio mmio)) {
            throw new ErrnoException(Errno.EINVAL, where(index) + " is device memory, not a register BAR; claim it"
                    + " with deviceMemory(" + index + ")");
        }
        if (registers instanceof RegisterBlock block && block.extent() > bar.size()) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: register block %s needs %#x bytes, the BAR has %#x",
                    where(index), block, block.extent(), bar.size()));
        }
        claim(index);
        try {
            mmio.attach(registers);
        } catch (ErrnoException e) {
            claimed.remove(index);
            throw e;
        }
        registrations.add(new Registration(mmio, registers));
    }

    @Override
    public synchronized Bar.Memory deviceMemory(int index) {
        requireOpen();
        Bar bar = bar(index);
        if (!(bar.backing() instanceof Bar.Memory mem)) {
            throw new ErrnoException(Errno.EINVAL, where(index) + " is a register BAR, not device memory; serve it"
                    + " with registers(" + index + ", ...)");
        }
        claim(index);
        return mem;
    }

    @Override
    public synchronized void dmaAddressBits(int bits) {
        requireOpen();
        if (bits < 32 || bits > 64) {
            throw new ErrnoException(Errno.EINVAL, fn.bdf() + " (model " + model + "): DMA address width of " + bits
                    + " bits is outside 32..64");
        }
        dmaAddressBits = bits;
    }

    /** The address width the model declared, 64 if it declared none. */
    synchronized int declaredDmaAddressBits() {
        return dmaAddressBits;
    }

    @Override
    public ModelDma dma() {
        return dma;
    }

    @Override
    public Msix.Outcome raise(int vector) {
        return fn.signal(vector);
    }

    /** Detaches every register handler this context attached; later registrations fail. */
    synchronized void close() {
        closed = true;
        for (int i = registrations.size() - 1; i >= 0; i--) {
            Registration r = registrations.get(i);
            r.bar().detach(r.handler());
        }
        registrations.clear();
        claimed.clear();
    }

    private Bar bar(int index) {
        return fn.bar(index).orElseThrow(() -> new ErrnoException(Errno.EINVAL, fn.bdf() + " (model " + model
                + ") has no BAR" + index + "; its BARs are " + fn.bars().stream().map(b -> "BAR" + b.index()).toList()));
    }

    private void claim(int index) {
        if (!claimed.add(index)) {
            throw new ErrnoException(Errno.EEXIST, where(index) + " is already registered by this device");
        }
    }

    private void requireOpen() {
        if (closed) {
            throw new ErrnoException(Errno.ENODEV, fn.bdf() + " (model " + model + ") has left; nothing can be registered");
        }
    }

    private String where(int index) {
        return fn.bdf() + " (model " + model + ") BAR" + index;
    }
}
