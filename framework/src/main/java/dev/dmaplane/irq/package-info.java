/**
 * Interrupts as a driver uses them ({@code kernel/irq/manage.c}, {@code drivers/pci/msi/api.c}): MSI-X, MSI or INTx
 * vectors allocated per PCI function with {@code pci_alloc_irq_vectors} rules and order of preference, handlers
 * requested on them with a hard and a threaded part ({@code request_threaded_irq}), per-vector counters shaped like
 * {@code /proc/interrupts}, released by devres when the driver goes away; and {@link dev.dmaplane.irq.IrqTrigger}, an eventfd-like object a vector can
 * signal for user space.
 */
@Export
@Version("1.1.0")
package dev.dmaplane.irq;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
