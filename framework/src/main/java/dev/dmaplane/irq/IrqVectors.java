package dev.dmaplane.irq;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * The MSI-X vectors a driver allocated on one PCI function ({@code pci_alloc_irq_vectors} in
 * {@code drivers/pci/msi/api.c}) and the handlers it requested on them ({@code request_threaded_irq} in
 * {@code kernel/irq/manage.c}).
 * <p>
 * Allocation programs each vector's table entry with its message (data = vector) and leaves it masked; requesting a
 * handler unmasks the vector, freeing it masks it again. A message runs the hard part on the thread that raised it,
 * as a CPU runs a hard handler in the context it interrupted, holding the vector so that {@link #free} waits for it
 * ({@code synchronize_irq}); a hard part returning {@link IrqReturn#WAKE_THREAD} (or none given) wakes the threaded
 * part on the vector's own thread, which {@link #free} stops. Everything is released by {@link #close()} or, failing
 * that, by devres when the driver is removed. Handlers must not request, free or close vectors of this allocation.
 */
public final class IrqVectors implements AutoCloseable {
    /** Legacy INTx ({@code PCI_IRQ_INTX}); not modelled. */
    public static final int PCI_IRQ_INTX = 1;
    /** MSI ({@code PCI_IRQ_MSI}); not modelled. */
    public static final int PCI_IRQ_MSI = 1 << 1;
    /** MSI-X ({@code PCI_IRQ_MSIX}). */
    public static final int PCI_IRQ_MSIX = 1 << 2;
    /** The address every message is programmed to write, the x86 interrupt window ({@code MSI_ADDR_BASE_LO}). */
    public static final long MSI_ADDRESS = 0xFEE0_0000L;

    private static final Logger LOG = LoggerFactory.getLogger(IrqVectors.class);
    private static final int ALL_FLAGS = PCI_IRQ_INTX | PCI_IRQ_MSI | PCI_IRQ_MSIX;

    private record Action(String name, IrqHandler hard, IrqThread thread) {
    }

    /** The interrupt controller attached to the function's MSI-X, which also finds the allocation again. */
    private record VectorSink(IrqVectors owner) implements Msix.Sink {
        @Override
        public void message(int vector, long address, int data) {
            owner.message(vector, address, data);
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
    private final Msix msix;
    private final Bar.Mmio bar;
    private final int control;
    private final Desc[] descs;
    private final AtomicLong spurious = new AtomicLong();
    private final Msix.Sink sink = new VectorSink(this);
    private Runnable devres;
    private boolean closed;

    private IrqVectors(PciFunction fn, Msix msix, int count) {
        this.fn = fn;
        this.msix = msix;
        this.bar = fn.bar(msix.bar()).orElseThrow().mmio();
        this.control = fn.configSpace().findCapability(CAP_ID_MSIX).orElseThrow() + MSIX_FLAGS;
        this.descs = new Desc[count];
        for (int v = 0; v < count; v++) {
            descs[v] = new Desc();
        }
    }

    /**
     * Allocates between {@code min} and {@code max} MSI-X vectors on {@code fn}: as many as its capability has, up to
     * {@code max}. The allocation is devres-managed: released when the driver bound to {@code fn} is removed.
     *
     * @param flags {@link #PCI_IRQ_MSIX}, possibly with {@link #PCI_IRQ_MSI} and {@link #PCI_IRQ_INTX}
     * @throws ErrnoException {@code EINVAL} for {@code min < 1}, {@code max < min} or unknown flags; {@code EOPNOTSUPP}
     *                        without {@link #PCI_IRQ_MSIX}; {@code ENOSPC} if the function has fewer than {@code min}
     *                        MSI-X vectors; {@code EIO} while its memory decoding is off; {@code EBUSY} if its
     *                        vectors are already allocated
     */
    public static IrqVectors alloc(PciFunction fn, int min, int max, int flags) {
        Objects.requireNonNull(fn, "fn");
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
        if ((flags & PCI_IRQ_MSIX) == 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, String.format("pci_alloc_irq_vectors: %s: flags %#x leave out"
                    + " PCI_IRQ_MSIX, the only interrupt type modelled", fn.bdf(), flags));
        }
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
        IrqVectors iv = new IrqVectors(fn, msix, Math.min(max, msix.vectors()));
        try {
            msix.attach(iv.sink);
        } catch (ErrnoException e) {
            throw new ErrnoException(Errno.EBUSY, "pci_alloc_irq_vectors: " + fn.bdf()
                    + " already has its MSI-X vectors allocated", e);
        }
        iv.program();
        iv.devres = fn.devres().add("pci_free_irq_vectors", iv::release);
        return iv;
    }

    /** The live allocation on {@code fn}, found through the interrupt controller attached to its MSI-X. */
    public static Optional<IrqVectors> of(PciFunction fn) {
        return fn.msix().flatMap(Msix::sink).filter(VectorSink.class::isInstance).map(s -> ((VectorSink) s).owner());
    }

    /**
     * {@code /proc/interrupts} for the live allocations of {@code functions}: a header, the requested vectors of each
     * allocation in the order given, then {@code ERR} summing their spurious messages.
     */
    public static String procInterrupts(Collection<PciFunction> functions) {
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
     * on a thread of its own when {@code hard} returns {@link IrqReturn#WAKE_THREAD} or is null; then unmasks it.
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
        setMasked(vector, false);
    }

    /** Requests {@code vector} to signal {@code trigger}, as VFIO connects a vector to an eventfd. */
    public void requestTrigger(int vector, IrqTrigger trigger, String name) {
        Objects.requireNonNull(trigger, "trigger");
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

    /** The requested vectors as {@code /proc/interrupts} lists them: vector, count, chip, hwirq, name. */
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
                sb.append(String.format("%4d: %10d  PCI-MSIX-%s %4d-edge      %s%n", v, d.count.get(), fn.bdf(), v, name));
            }
        }
    }

    /**
     * Frees every requested vector and the allocation ({@code pci_free_irq_vectors}): masks the vectors, clears MSI-X
     * Enable and lets the function's MSI-X be allocated again. Closing again does nothing.
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
        fn.configSpace().write(control, 2, fn.configSpace().read(control, 2) & ~MSIX_FLAGS_ENABLE);
        msix.detach(sink);
    }

    /** Masks {@code vector} and takes its action away once no hard handler runs; caller holds this monitor. */
    private Action takeAction(int vector) {
        Desc d = descs[vector];
        d.lock.writeLock().lock();
        try {
            Action a = d.action;
            if (a != null) {
                setMasked(vector, true);
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

    /** The interrupt controller: a message from the function ({@code handle_edge_irq}). */
    private void message(int vector, long address, int data) {
        if (address != MSI_ADDRESS || data < 0 || data >= descs.length) {
            spurious.incrementAndGet();
            LOG.warn("{}: MSI-X vector {} wrote {} to {}, which names no allocated vector", fn.bdf(), vector, data,
                    Long.toHexString(address));
            return;
        }
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

    /** {@code msix_capability_init}: every entry masked, the allocated ones given their message, then enabled. */
    private void program() {
        fn.configSpace().write(control, 2, MSIX_FLAGS_ENABLE | MSIX_FLAGS_MASKALL);
        for (int v = 0; v < msix.vectors(); v++) {
            setMasked(v, true);
        }
        for (int v = 0; v < descs.length; v++) {
            long entry = msix.tableOffset() + (long) v * MSIX_ENTRY_SIZE;
            bar.write(entry + MSIX_ENTRY_LOWER_ADDR, 4, MSI_ADDRESS);
            bar.write(entry + MSIX_ENTRY_UPPER_ADDR, 4, 0);
            bar.write(entry + MSIX_ENTRY_DATA, 4, v);
        }
        fn.configSpace().write(control, 2, MSIX_FLAGS_ENABLE);
    }

    private void setMasked(int vector, boolean masked) {
        bar.write(msix.tableOffset() + (long) vector * MSIX_ENTRY_SIZE + PciRegs.MSIX_ENTRY_VECTOR_CTRL, 4,
                masked ? MSIX_ENTRY_CTRL_MASKBIT : 0);
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
