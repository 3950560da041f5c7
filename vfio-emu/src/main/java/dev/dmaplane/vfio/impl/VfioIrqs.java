package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.irq.IrqReturn;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.OptionalInt;
import java.util.function.IntFunction;

import static dev.dmaplane.vfio.VfioUapi.*;

/**
 * A vfio-pci device's interrupts ({@code drivers/vfio/pci/vfio_pci_intrs.c}): one of INTx, MSI or MSI-X at a time,
 * each vector signalling the eventfd the user set; the ERR and REQ eventfds. Thread-safe ({@code vdev->igate}).
 */
final class VfioIrqs {
    private static final int DATA_NONE = VFIO_IRQ_SET_DATA_NONE;
    private static final int DATA_BOOL = VFIO_IRQ_SET_DATA_BOOL;
    private static final int DATA_EVENTFD = VFIO_IRQ_SET_DATA_EVENTFD;
    private static final int DATA_TYPE_MASK = DATA_NONE | DATA_BOOL | DATA_EVENTFD;
    private static final int ACTION_MASK = VFIO_IRQ_SET_ACTION_MASK;
    private static final int ACTION_UNMASK = VFIO_IRQ_SET_ACTION_UNMASK;
    private static final int ACTION_TRIGGER = VFIO_IRQ_SET_ACTION_TRIGGER;
    private static final int ACTION_TYPE_MASK = ACTION_MASK | ACTION_UNMASK | ACTION_TRIGGER;
    /** {@code offsetofend(struct vfio_irq_set, count)}. */
    static final int SET_MINSZ = 20;

    private final PciFunction fn;
    private final String name;
    /** {@code vdev->irq_type}: -1 for none, else the index enabled. */
    private int type = -1;
    private IrqVectors vectors;
    private IrqTrigger[] triggers = new IrqTrigger[0];
    /** Guards the INTx mask state, apart from this object: the handler runs while {@code free_irq} waits for it. */
    private final Object intxLock = new Object();
    private volatile IrqTrigger intxTrigger;
    private boolean intxMasked;
    private boolean intxPending;
    private IrqTrigger err;
    private IrqTrigger req;

    VfioIrqs(PciFunction fn) {
        this.fn = fn;
        this.name = "vfio-" + fn.name();
    }

    /** {@code vfio_pci_get_irq_count}. */
    int count(int index) {
        return switch (index) {
            case VFIO_PCI_INTX_IRQ_INDEX -> fn.configSpace().read(PciRegs.INTERRUPT_PIN, 1) != 0 ? 1 : 0;
            case VFIO_PCI_MSI_IRQ_INDEX -> fn.msi().map(m -> m.vectors()).orElse(0);
            case VFIO_PCI_MSIX_IRQ_INDEX -> fn.msix().map(m -> m.vectors()).orElse(0);
            case VFIO_PCI_ERR_IRQ_INDEX -> fn.isPcie() ? 1 : 0;
            case VFIO_PCI_REQ_IRQ_INDEX -> 1;
            default -> 0;
        };
    }

    /**
     * {@code vfio_pci_ioctl_set_irqs}: {@code vfio_set_irqs_validate_and_prepare} (an index past the five, a
     * {@code start}/{@code count} past the index's vectors, unknown flags, not exactly one data type, or data
     * shorter than {@code count} entries: {@code EINVAL}), then {@code vfio_pci_set_irqs_ioctl} ({@code ENOTTY} for an
     * action the index has not, as for several actions at once or masking MSI).
     *
     * @param eventfds resolves a user descriptor to its eventfd ({@code EBADF}, {@code EINVAL} for another file)
     */
    synchronized long set(MemorySegment arg, IntFunction<IrqTrigger> eventfds) {
        long argsz = Integer.toUnsignedLong(arg.get(ValueLayout.JAVA_INT_UNALIGNED, 0));
        int flags = arg.get(ValueLayout.JAVA_INT_UNALIGNED, 4);
        int index = arg.get(ValueLayout.JAVA_INT_UNALIGNED, 8);
        long start = Integer.toUnsignedLong(arg.get(ValueLayout.JAVA_INT_UNALIGNED, 12));
        long count = Integer.toUnsignedLong(arg.get(ValueLayout.JAVA_INT_UNALIGNED, 16));
        String what = String.format("%s VFIO_DEVICE_SET_IRQS index %d start %d count %d flags %#x", fn.name(),
                index, start, count, flags);
        if (index < 0 || index >= VFIO_PCI_NUM_IRQS || (flags & ~(DATA_TYPE_MASK | ACTION_TYPE_MASK)) != 0) {
            throw new ErrnoException(Errno.EINVAL, what + ": no such index, or unknown flags");
        }
        int max = count(index);
        if (start >= max || start + count > max) {
            throw new ErrnoException(Errno.EINVAL, what + ": outside the index's " + max + " vectors");
        }
        int size = switch (flags & DATA_TYPE_MASK) {
            case DATA_NONE -> 0;
            case DATA_BOOL -> 1;
            case DATA_EVENTFD -> 4;
            default -> throw new ErrnoException(Errno.EINVAL, what + ": not exactly one DATA type");
        };
        if (size > 0 && argsz - SET_MINSZ < count * size) {
            throw new ErrnoException(Errno.EINVAL, what + ": argsz " + argsz + " holds fewer than " + count + " entries");
        }
        MemorySegment data = size == 0 ? MemorySegment.NULL : arg.asSlice(SET_MINSZ, count * size);
        int action = flags & ACTION_TYPE_MASK;
        int s = (int) start;
        int c = (int) count;
        switch (index) {
            case VFIO_PCI_INTX_IRQ_INDEX -> {
                switch (action) {
                    case ACTION_MASK -> intxMask(true, flags, data);
                    case ACTION_UNMASK -> intxMask(false, flags, data);
                    case ACTION_TRIGGER -> vectorTrigger(index, s, c, flags, data, eventfds);
                    default -> throw notty(what);
                }
            }
            case VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX -> {
                if (action != ACTION_TRIGGER) {
                    throw notty(what);
                }
                vectorTrigger(index, s, c, flags, data, eventfds);
            }
            case VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX -> {
                if (action != ACTION_TRIGGER) {
                    throw notty(what);
                }
                IrqTrigger t = ctxTrigger(index == VFIO_PCI_ERR_IRQ_INDEX ? err : req, c, flags, data, eventfds);
                if (index == VFIO_PCI_ERR_IRQ_INDEX) {
                    err = t;
                } else {
                    req = t;
                }
            }
            default -> throw notty(what);
        }
        return 0;
    }

    private static ErrnoException notty(String what) {
        return new ErrnoException(Errno.ENOTTY, what + ": no such action for this index");
    }

    /** {@code vfio_pci_set_ctx_trigger_single}: an eventfd set (fd >= 0), cleared (-1), or signalled (NONE/BOOL). */
    private static IrqTrigger ctxTrigger(IrqTrigger cur, int count, int flags, MemorySegment data,
                                         IntFunction<IrqTrigger> eventfds) {
        if ((flags & DATA_EVENTFD) != 0) {
            int fd = data.get(ValueLayout.JAVA_INT_UNALIGNED, 0);
            return fd < 0 ? null : eventfds.apply(fd);
        }
        if (count == 0 && (flags & DATA_NONE) != 0) {
            return null;
        }
        boolean fire = (flags & DATA_NONE) != 0 || data.get(ValueLayout.JAVA_BYTE, 0) != 0;
        if (fire && cur != null) {
            cur.signal();
        }
        return cur;
    }

    /**
     * {@code vfio_pci_set_intx_trigger} and {@code vfio_pci_set_msi_trigger}: count 0 with {@code DATA_NONE}
     * disables the index; another index enabled already is {@code EINVAL}; eventfds enable the vectors on first use
     * ({@code pci_alloc_irq_vectors} of {@code start + count}) and set or clear each one; {@code DATA_NONE} or
     * {@code DATA_BOOL} signal the vectors' eventfds as a loopback test.
     */
    private void vectorTrigger(int index, int start, int count, int flags, MemorySegment data,
                               IntFunction<IrqTrigger> eventfds) {
        if (type == index && count == 0 && (flags & DATA_NONE) != 0) {
            disable();
            return;
        }
        if (type != -1 && type != index) {
            throw new ErrnoException(Errno.EINVAL, fn.name() + ": IRQ index " + type
                    + " is enabled; disable it before index " + index);
        }
        if ((flags & DATA_EVENTFD) != 0) {
            IrqTrigger[] set = new IrqTrigger[count];
            for (int i = 0; i < count; i++) {
                int fd = data.get(ValueLayout.JAVA_INT_UNALIGNED, 4L * i);
                set[i] = fd < 0 ? null : eventfds.apply(fd);
            }
            boolean fresh = type == -1;
            if (fresh) {
                enable(index, start + count);
            } else if (start + count > triggers.length) {
                throw new ErrnoException(Errno.EINVAL, fn.name() + ": vectors " + start + ".." + (start + count - 1)
                        + " past the " + triggers.length + " enabled");
            }
            for (int i = 0; i < count; i++) {
                setVector(start + i, set[i]);
            }
            return;
        }
        if (type != index || start + count > triggers.length) {
            throw new ErrnoException(Errno.EINVAL, fn.name() + ": index " + index + " is not enabled for a loopback");
        }
        for (int i = 0; i < count; i++) {
            boolean fire = (flags & DATA_NONE) != 0 || data.get(ValueLayout.JAVA_BYTE, i) != 0;
            if (fire && triggers[start + i] != null) {
                triggers[start + i].signal();
            }
        }
    }

    private void enable(int index, int n) {
        int irqFlags = switch (index) {
            case VFIO_PCI_INTX_IRQ_INDEX -> IrqVectors.PCI_IRQ_INTX;
            case VFIO_PCI_MSI_IRQ_INDEX -> IrqVectors.PCI_IRQ_MSI;
            default -> IrqVectors.PCI_IRQ_MSIX;
        };
        vectors = IrqVectors.alloc(fn, n, n, irqFlags);
        triggers = new IrqTrigger[n];
        type = index;
        synchronized (intxLock) {
            intxMasked = false;
            intxPending = false;
        }
    }

    private void setVector(int v, IrqTrigger t) {
        if (triggers[v] != null) {
            vectors.free(v);
            triggers[v] = null;
            intxTrigger = null;
        }
        if (t == null) {
            return;
        }
        triggers[v] = t;
        if (type == VFIO_PCI_INTX_IRQ_INDEX) {
            intxTrigger = t;
            vectors.request(v, vector -> intx(), null, name);
        } else {
            vectors.requestTrigger(v, t, name);
        }
    }

    /** {@code vfio_intx_handler}: a masked line is remembered and signalled at unmask. */
    private IrqReturn intx() {
        synchronized (intxLock) {
            IrqTrigger t = intxTrigger;
            if (intxMasked) {
                intxPending = true;
            } else if (t != null) {
                t.signal();
            }
        }
        return IrqReturn.HANDLED;
    }

    private void intxMask(boolean mask, int flags, MemorySegment data) {
        if ((flags & DATA_EVENTFD) != 0) {
            throw new ErrnoException(Errno.EINVAL, fn.name() + ": INTx (un)mask through an eventfd (irqfd) is not offered");
        }
        if (type != VFIO_PCI_INTX_IRQ_INDEX) {
            return;
        }
        boolean apply = (flags & DATA_NONE) != 0 || data.get(ValueLayout.JAVA_BYTE, 0) != 0;
        if (!apply) {
            return;
        }
        synchronized (intxLock) {
            intxMasked = mask;
            IrqTrigger t = intxTrigger;
            if (!mask && intxPending) {
                intxPending = false;
                if (t != null) {
                    t.signal();
                }
            }
        }
    }

    /** {@code vfio_pci_irq_disable}-like teardown: the vectors go back, the eventfds are forgotten. */
    synchronized void disable() {
        if (vectors != null) {
            vectors.close();
        }
        vectors = null;
        triggers = new IrqTrigger[0];
        intxTrigger = null;
        type = -1;
    }

    /** The index enabled now, if any. */
    synchronized OptionalInt type() {
        return type < 0 ? OptionalInt.empty() : OptionalInt.of(type);
    }

    /** {@code vfio_pci_core_request}: signals the REQ eventfd; whether there was one. */
    synchronized boolean request() {
        if (req != null) {
            req.signal();
            return true;
        }
        return false;
    }

    /** Every eventfd is dropped (the last device file closed). */
    synchronized void releaseAll() {
        disable();
        err = null;
        req = null;
    }
}
