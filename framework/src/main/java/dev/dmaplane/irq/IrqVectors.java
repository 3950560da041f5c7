package dev.dmaplane.irq;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Intx;
import dev.dmaplane.pci.Msi;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.PciFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.stream.Stream;

/**
 * The interrupt vectors a driver allocated on one PCI function ({@code pci_alloc_irq_vectors} in
 * {@code drivers/pci/msi/api.c}) and the handlers it requested on them ({@code request_threaded_irq} in
 * {@code kernel/irq/manage.c}): MSI-X, else MSI, else the INTx line, in that order of preference.
 * <p>
 * MSI-X allocation programs each vector's table entry with its message (data = vector) and leaves it masked; MSI
 * programs the one address and base data 0, so that vector {@code n} arrives as data {@code n}, and allots the count
 * rounded up to a power of two in Multiple Message Enable, masking every vector when the function can; INTx clears
 * Interrupt Disable ({@code pci_intx}) and has vector 0 only. Requesting a handler unmasks a maskable vector, freeing
 * it masks it again. A message (or an INTx assertion) runs the hard part on the thread that raised it,
 * as a CPU runs a hard handler in the context it interrupted, holding the vector so that {@link #free} waits for it
 * ({@code synchronize_irq}); a hard part returning {@link IrqReturn#WAKE_THREAD} (or none given) wakes the threaded
 * part on the vector's own thread, which {@link #free} stops. Everything is released by {@link #close()} or, failing
 * that, by devres when the driver is removed. Handlers must not request, free or close vectors of this allocation.
 * <p>
 * The registers each type programs and masks live in {@code MsiChip}. Allocation, request and free, and delivery
 * stay here: they all work on the per-vector descriptors and their locks, and {@link #free} must wait for a hard
 * handler in flight on the same descriptor.
 */
public final class IrqVectors implements AutoCloseable {
    /** Legacy INTx ({@code PCI_IRQ_INTX}): one vector, the function's interrupt pin. */
    public static final int PCI_IRQ_INTX = 1;
    /** MSI ({@code PCI_IRQ_MSI}): a power-of-two block of up to 32 vectors in config space. */
    public static final int PCI_IRQ_MSI = 1 << 1;
    /** MSI-X ({@code PCI_IRQ_MSIX}). */
    public static final int PCI_IRQ_MSIX = 1 << 2;
    /** The address every message is programmed to write, the x86 interrupt window ({@code MSI_ADDR_BASE_LO}). */
    public static final long MSI_ADDRESS = 0xFEE0_0000L;

    private static final Logger LOG = LoggerFactory.getLogger(IrqVectors.class);
    private static final int ALL_FLAGS = PCI_IRQ_INTX | PCI_IRQ_MSI | PCI_IRQ_MSIX;

    /** The interrupt type an allocation uses, with the chip and flow {@code /proc/interrupts} names. */
    public enum Type {
        /** MSI-X messages, edge-triggered. */
        MSIX("PCI-MSIX-%s %4d-edge     "),
        /** MSI messages, edge-triggered. */
        MSI("PCI-MSI-%s %4d-edge     "),
        /** The INTx line through the IO-APIC, level-triggered with an end-of-interrupt ({@code handle_fasteoi_irq}). */
        INTX("IO-APIC %4d-fasteoi  ");

        private final String chip;

        Type(String chip) {
            this.chip = chip;
        }
    }

    private record Action(String name, IrqHandler hard, IrqThread thread) {
    }

    /** The interrupt controller attached to the function's MSI-X, MSI or INTx, which also finds the allocation again. */
    private record VectorSink(IrqVectors owner) implements Msix.Sink, Intx.Sink {
        @Override
        public void message(int vector, long address, int data) {
            owner.message(vector, address, data);
        }

        @Override
        public void interrupt() {
            owner.handle(0);
        }
    }

    /** One vector's state ({@code struct irq_desc}); the write lock waits for hard handlers in flight. */
    private static final class Desc {
        final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
        final AtomicLong count = new AtomicLong();
        final AtomicLong unhandled = new AtomicLong();
        Action action;
    }

    private final PciFunction fn;
    private final Type type;
    private final Msix msix;
    private final Msi msi;
    private final Intx intx;
    private final MsiChip irqChip;
    private final Desc[] descs;
    private final AtomicLong spurious = new AtomicLong();
    private final VectorSink sink = new VectorSink(this);
    private Runnable devres;
    private boolean closed;

    private IrqVectors(PciFunction fn, Type type, int count) {
        this.fn = fn;
        this.type = type;
        this.msix = type == Type.MSIX ? fn.msix().orElseThrow() : null;
        this.msi = type == Type.MSI ? fn.msi().orElseThrow() : null;
        this.intx = type == Type.INTX ? fn.intx().orElseThrow() : null;
        this.irqChip = new MsiChip(fn, type, count);
        this.descs = new Desc[count];
        for (int v = 0; v < count; v++) {
            descs[v] = new Desc();
        }
    }

    /**
     * Allocates between {@code min} and {@code max} vectors on {@code fn} as {@code pci_alloc_irq_vectors} does: MSI-X
     * if {@code flags} allow it and it fits, else MSI, else INTx when {@code min} is 1 and the function has an
     * interrupt pin; MSI-X and MSI give as many vectors as the capability has, up to {@code max}. The allocation is
     * devres-managed: released when the driver bound to {@code fn} is removed.
     *
     * @param flags {@link #PCI_IRQ_MSIX}, {@link #PCI_IRQ_MSI}, {@link #PCI_IRQ_INTX} or a combination
     * @throws ErrnoException {@code EINVAL} for {@code min < 1}, {@code max < min} or unknown flags; {@code EBUSY} if
     *                        the function's vectors are already allocated; otherwise the error of the last type
     *                        tried, as the kernel returns it: {@code ENOSPC} if it has fewer than {@code min}
     *                        vectors (or none, or no type allowed), {@code EIO} for MSI-X while memory decoding is
     *                        off; INTx with {@code min > 1} or no interrupt pin fails with the error before it
     */
    public static IrqVectors alloc(PciFunction fn, int min, int max, int flags) {
        if (fn == null) {
            throw new ErrnoException(Errno.EINVAL, "pci_alloc_irq_vectors: the PCI function is null");
        }
        if (min < 1) {
            throw new ErrnoException(Errno.EINVAL, "pci_alloc_irq_vectors: " + fn.bdf() + ": min_vecs " + min + " is below 1");
        }
        if (max < min) {
            throw new ErrnoException(Errno.EINVAL, "pci_alloc_irq_vectors: " + fn.bdf() + ": max_vecs " + max
                    + " is below min_vecs " + min);
        }
        if ((flags & ~ALL_FLAGS) != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("pci_alloc_irq_vectors: %s: flags %#x has bits other than"
                    + " PCI_IRQ_INTX, PCI_IRQ_MSI and PCI_IRQ_MSIX", fn.bdf(), flags));
        }
        Optional<IrqVectors> live = of(fn);
        if (live.isPresent()) {
            throw new ErrnoException(Errno.EBUSY, "pci_alloc_irq_vectors: " + fn.bdf()
                    + " already has its " + live.get().type() + " vectors allocated");
        }
        ErrnoException last = new ErrnoException(Errno.ENOSPC, String.format(
                "pci_alloc_irq_vectors: %s: flags %#x allow no interrupt type", fn.bdf(), flags));
        if ((flags & PCI_IRQ_MSIX) != 0) {
            try {
                return enable(fn, Type.MSIX, Math.min(max, msixVectors(fn, min)));
            } catch (ErrnoException e) {
                last = e;
            }
        }
        if ((flags & PCI_IRQ_MSI) != 0) {
            try {
                return enable(fn, Type.MSI, Math.min(max, msiVectors(fn, min)));
            } catch (ErrnoException e) {
                last = e;
            }
        }
        if ((flags & PCI_IRQ_INTX) != 0) {
            if (min == 1 && fn.intx().isPresent()) {
                return enable(fn, Type.INTX, 1);
            }
            if ((flags & (PCI_IRQ_MSIX | PCI_IRQ_MSI)) == 0) {
                last = new ErrnoException(Errno.ENOSPC, "pci_alloc_irq_vectors: " + fn.bdf() + (min != 1
                        ? ": INTx has one vector, fewer than min_vecs " + min : " has no INTx: its Interrupt Pin is 0"));
            }
        }
        throw last;
    }

    /** {@code __pci_enable_msix_range}: the table size, checked against {@code min} and memory decoding. */
    private static int msixVectors(PciFunction fn, int min) {
        Msix msix = fn.msix().orElseThrow(() -> new ErrnoException(Errno.ENOSPC,
                "pci_alloc_irq_vectors: " + fn.bdf() + " has no MSI-X capability for min_vecs " + min));
        if (msix.vectors() < min) {
            throw new ErrnoException(Errno.ENOSPC, "pci_alloc_irq_vectors: " + fn.bdf() + " has " + msix.vectors()
                    + " MSI-X vectors, fewer than min_vecs " + min);
        }
        if (!fn.configSpace().memorySpaceEnabled()) {
            throw new ErrnoException(Errno.EIO, "pci_alloc_irq_vectors: " + fn.bdf()
                    + " does not decode its memory BARs, so its MSI-X table cannot be programmed");
        }
        return msix.vectors();
    }

    /** {@code __pci_enable_msi_range}: Multiple Message Capable ({@code pci_msi_vec_count}), checked against {@code min}. */
    private static int msiVectors(PciFunction fn, int min) {
        Msi msi = fn.msi().orElseThrow(() -> new ErrnoException(Errno.ENOSPC,
                "pci_alloc_irq_vectors: " + fn.bdf() + " has no MSI capability for min_vecs " + min));
        if (msi.vectors() < min) {
            throw new ErrnoException(Errno.ENOSPC, "pci_alloc_irq_vectors: " + fn.bdf() + " has " + msi.vectors()
                    + " MSI vectors, fewer than min_vecs " + min);
        }
        return msi.vectors();
    }

    private static IrqVectors enable(PciFunction fn, Type type, int count) {
        IrqVectors iv = new IrqVectors(fn, type, count);
        try {
            switch (type) {
                case MSIX -> iv.msix.attach(iv.sink);
                case MSI -> iv.msi.attach(iv.sink);
                case INTX -> iv.intx.attach(iv.sink);
            }
        } catch (ErrnoException e) {
            throw new ErrnoException(Errno.EBUSY, "pci_alloc_irq_vectors: " + fn.bdf()
                    + " already has its " + type + " vectors allocated", e);
        }
        iv.irqChip.startup();
        iv.devres = fn.devres().add("pci_free_irq_vectors", iv::release);
        return iv;
    }

    /** The live allocation on {@code fn}, found through the interrupt controller attached to its MSI-X, MSI or INTx. */
    public static Optional<IrqVectors> of(PciFunction fn) {
        ErrnoException.requireNonNull(fn, "PCI function");
        return Stream.of(fn.msix().flatMap(Msix::sink), fn.msi().flatMap(Msi::sink), fn.intx().flatMap(Intx::sink))
                .flatMap(Optional::stream).filter(VectorSink.class::isInstance).map(s -> ((VectorSink) s).owner())
                .findFirst();
    }

    /**
     * {@code /proc/interrupts} for the live allocations of {@code functions}: a header, the requested vectors of each
     * allocation in the order given, then {@code ERR} summing their spurious messages.
     */
    public static String procInterrupts(Collection<PciFunction> functions) {
        ErrnoException.requireNonNull(functions, "/proc/interrupts: function list");
        StringBuilder sb = new StringBuilder(String.format("%6s%10s%n", "", "CPU0"));
        long err = 0;
        for (PciFunction fn : functions) {
            Optional<IrqVectors> iv = of(fn);
            if (iv.isPresent()) {
                iv.get().vectorLines(sb);
                err += iv.get().spurious();
            }
        }
        return sb.append(String.format(" ERR: %10d%n", err)).toString();
    }

    /** The interrupt type the allocation got. */
    public Type type() {
        return type;
    }

    /** The function the vectors belong to. */
    public PciFunction function() {
        return fn;
    }

    /** The number of vectors allocated. */
    public int count() {
        return descs.length;
    }

    /**
     * Requests {@code vector} ({@code request_threaded_irq}): {@code hard} runs on the raising thread, {@code threaded}
     * on a thread of its own when {@code hard} returns {@link IrqReturn#WAKE_THREAD} or is null; then unmasks it if
     * it can be masked.
     *
     * @throws ErrnoException {@code EINVAL} for a vector outside the allocation, a blank name, no handler at all or
     *                        freed vectors; {@code EBUSY} if the vector is already requested; {@code EDEADLK} from
     *                        one of this allocation's handlers
     */
    public void request(int vector, IrqHandler hard, IrqHandler threaded, String name) {
        checkVector(vector);
        if (name == null || name.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, "request_irq: " + fn.bdf() + " vector " + vector + ": blank name");
        }
        if (hard == null && threaded == null) {
            throw new ErrnoException(Errno.EINVAL, "request_irq: " + fn.bdf() + " vector " + vector + " (" + name
                    + "): neither a hard nor a threaded handler");
        }
        checkNotInHandler("request_irq");
        Desc d = descs[vector];
        synchronized (this) {
            checkOpen("request_irq");
            d.lock.writeLock().lock();
            try {
                if (d.action != null) {
                    throw new ErrnoException(Errno.EBUSY, "request_irq: " + fn.bdf() + " vector " + vector
                            + " is already requested by '" + d.action.name() + "'");
                }
                IrqThread thread = null;
                if (threaded != null) {
                    thread = new IrqThread("irq/" + vector + "-" + name, vector, threaded, d.unhandled);
                    thread.start();
                }
                d.action = new Action(name, hard, thread);
            } finally {
                d.lock.writeLock().unlock();
            }
        }
        irqChip.mask(vector, false);
    }

    /** Requests {@code vector} to signal {@code trigger}, as VFIO connects a vector to an eventfd. */
    public void requestTrigger(int vector, IrqTrigger trigger, String name) {
        if (trigger == null) {
            throw new ErrnoException(Errno.EINVAL, fn.bdf() + ": vector " + vector + " requested with a null trigger");
        }
        request(vector, v -> {
            trigger.signal();
            return IrqReturn.HANDLED;
        }, null, name);
    }

    /**
     * Frees {@code vector} ({@code free_irq}): masks it, waits for its hard handler in flight and stops its thread.
     *
     * @throws ErrnoException {@code EINVAL} for a vector outside the allocation or not requested; {@code EDEADLK} from
     *                        one of this allocation's handlers
     */
    public void free(int vector) {
        checkVector(vector);
        checkNotInHandler("free_irq");
        Action a;
        synchronized (this) {
            checkOpen("free_irq");
            a = takeAction(vector);
        }
        if (a == null) {
            throw new ErrnoException(Errno.EINVAL, "free_irq: " + fn.bdf() + " vector " + vector + " is not requested");
        }
        stop(a);
    }

    /** Messages vector {@code vector} received ({@code /proc/interrupts} count). */
    public long interrupts(int vector) {
        checkVector(vector);
        return descs[vector].count.get();
    }

    /** Messages on {@code vector} nobody handled: none requested, {@link IrqReturn#NONE}, or a failing handler. */
    public long unhandled(int vector) {
        checkVector(vector);
        return descs[vector].unhandled.get();
    }

    /** Messages whose address or data named no vector of this allocation ({@code ERR} in {@code /proc/interrupts}). */
    public long spurious() {
        return spurious.get();
    }

    /**
     * The requested vectors as {@code /proc/interrupts} lists them: vector, count, chip ({@code PCI-MSIX-<bdf>},
     * {@code PCI-MSI-<bdf>} or {@code IO-APIC}), hwirq and flow ({@code edge}, or {@code fasteoi} for the INTx line,
     * whose hwirq is the IO-APIC input 16..19 that Interrupt Pin A..D reaches), name.
     */
    public String procInterrupts() {
        StringBuilder sb = new StringBuilder();
        vectorLines(sb);
        sb.append(String.format(" ERR: %10d%n", spurious.get()));
        return sb.toString();
    }

    private void vectorLines(StringBuilder sb) {
        for (int v = 0; v < descs.length; v++) {
            Desc d = descs[v];
            String name;
            d.lock.readLock().lock();
            try {
                name = d.action == null ? null : d.action.name();
            } finally {
                d.lock.readLock().unlock();
            }
            if (name != null) {
                String chip = type == Type.INTX ? String.format(type.chip, 15 + intx.pin())
                        : String.format(type.chip, fn.bdf(), v);
                sb.append(String.format("%4d: %10d  %s %s%n", v, d.count.get(), chip, name));
            }
        }
    }

    /**
     * Frees every requested vector and the allocation ({@code pci_free_irq_vectors}): masks the vectors, clears MSI-X
     * or MSI Enable and clears Interrupt Disable again ({@code pci_intx_for_msi}), and lets the function's vectors be
     * allocated again. Closing again does nothing.
     *
     * @throws ErrnoException {@code EDEADLK} from one of this allocation's handlers
     */
    @Override
    public void close() {
        checkNotInHandler("pci_free_irq_vectors");
        devres.run();
    }

    private void release() {
        List<Action> actions = new ArrayList<>();
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            for (int v = 0; v < descs.length; v++) {
                Action a = takeAction(v);
                if (a != null) {
                    actions.add(a);
                }
            }
        }
        actions.forEach(this::stop);
        irqChip.shutdown();
        switch (type) {
            case MSIX -> msix.detach(sink);
            case MSI -> msi.detach(sink);
            case INTX -> intx.detach(sink);
        }
    }

    /** Masks {@code vector} and takes its action away once no hard handler runs; caller holds this monitor. */
    private Action takeAction(int vector) {
        Desc d = descs[vector];
        d.lock.writeLock().lock();
        try {
            Action a = d.action;
            if (a != null) {
                irqChip.mask(vector, true);
                d.action = null;
            }
            return a;
        } finally {
            d.lock.writeLock().unlock();
        }
    }

    private void stop(Action a) {
        if (a.thread() != null) {
            a.thread().stop();
        }
    }

    /** The interrupt controller: a message from the function, naming its vector by the data. */
    private void message(int vector, long address, int data) {
        if (address != MSI_ADDRESS || data < 0 || data >= descs.length) {
            spurious.incrementAndGet();
            LOG.warn("{}: {} vector {} wrote {} to {}, which names no allocated vector", fn.bdf(), type, vector, data,
                    Long.toHexString(address));
            return;
        }
        handle(data);
    }

    /** Runs vector {@code data}'s handlers ({@code handle_edge_irq}, or {@code handle_fasteoi_irq} for INTx). */
    private void handle(int data) {
        Desc d = descs[data];
        d.count.incrementAndGet();
        d.lock.readLock().lock();
        try {
            Action a = d.action;
            if (a == null) {
                d.unhandled.incrementAndGet();
                return;
            }
            IrqReturn r = runHard(a, data, d);
            if (r == IrqReturn.NONE) {
                d.unhandled.incrementAndGet();
            } else if (r == IrqReturn.WAKE_THREAD) {
                if (a.thread() != null) {
                    a.thread().wake();
                } else {
                    LOG.warn("{}: vector {} ({}) asked to wake a thread it does not have", fn.bdf(), data, a.name());
                    d.unhandled.incrementAndGet();
                }
            }
        } finally {
            d.lock.readLock().unlock();
        }
    }

    private IrqReturn runHard(Action a, int vector, Desc d) {
        if (a.hard() == null) {
            return IrqReturn.WAKE_THREAD;
        }
        try {
            return Objects.requireNonNull(a.hard().handle(vector), "hard handler result");
        } catch (RuntimeException e) {
            LOG.error("{}: hard handler of vector {} ({}) failed; counted as unhandled", fn.bdf(), vector, a.name(), e);
            return IrqReturn.NONE;
        }
    }

    private void checkVector(int vector) {
        if (vector < 0 || vector >= descs.length) {
            throw new ErrnoException(Errno.EINVAL, fn.bdf() + ": vector " + vector + " is outside the " + descs.length
                    + " allocated (0.." + (descs.length - 1) + ")");
        }
    }

    private void checkOpen(String what) {
        if (closed) {
            throw new ErrnoException(Errno.EINVAL, what + ": " + fn.bdf() + ": its IRQ vectors were freed");
        }
    }

    private void checkNotInHandler(String what) {
        for (int v = 0; v < descs.length; v++) {
            Desc d = descs[v];
            boolean inThread;
            d.lock.readLock().lock();
            try {
                inThread = d.action != null && d.action.thread() != null && d.action.thread().isCurrent();
            } finally {
                d.lock.readLock().unlock();
            }
            if (d.lock.getReadHoldCount() > 0 || inThread) {
                throw new ErrnoException(Errno.EDEADLK, what + ": " + fn.bdf() + ": called from the handler of vector " + v);
            }
        }
    }
}
