/**
 * Process address spaces ({@code mm_struct}): anonymous, file-backed and DAX VMAs with demand paging and
 * copy-on-write, mappings of PCI BARs ({@code VM_IO | VM_PFNMAP}), pinning for DMA ({@code pin_user_pages}), page
 * migration and interval notifiers ({@code mmu_interval_notifier}) that tell device drivers when a range they
 * mirror is invalidated.
 * <p>
 * {@link dev.dmaplane.mm.AddressSpace} models the kernel's {@code struct mm_struct}, the address space of a
 * process, not {@code struct address_space}, the page cache of a file, which {@link dev.dmaplane.fs.Inode} models.
 */
@Export
@Version("1.3.0")
package dev.dmaplane.mm;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
