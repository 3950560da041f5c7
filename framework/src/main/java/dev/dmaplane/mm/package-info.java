/**
 * Process address spaces ({@code mm_struct}): anonymous, file-backed and DAX VMAs with demand paging and
 * copy-on-write, pinning for DMA ({@code pin_user_pages}), page migration and interval notifiers
 * ({@code mmu_interval_notifier}) that tell device drivers when a range they mirror is invalidated.
 */
@Export
@Version("1.1.0")
package dev.dmaplane.mm;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
