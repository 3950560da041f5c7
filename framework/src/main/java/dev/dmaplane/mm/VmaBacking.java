package dev.dmaplane.mm;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.pci.PciFunction;
import org.osgi.annotation.versioning.ProviderType;

/**
 * What a VMA maps: anonymous memory, a file through its page cache, a DAX file's storage directly, or a PCI
 * function's BAR.
 */
@ProviderType
public sealed interface VmaBacking permits VmaBacking.Anonymous, VmaBacking.File, VmaBacking.Dax, VmaBacking.PciBar {

    /** Anonymous memory ({@code vma_is_anonymous}): zero-filled on first touch. */
    record Anonymous() implements VmaBacking {
    }

    /**
     * A file mapped through the page cache.
     *
     * @param inode  the file
     * @param pgoff  the file page the VMA starts at ({@code vm_pgoff})
     * @param shared {@code MAP_SHARED}; else {@code MAP_PRIVATE}, whose writes go to copy-on-write copies
     */
    record File(Inode inode, long pgoff, boolean shared) implements VmaBacking {
    }

    /**
     * A file of a DAX file system: its storage is mapped with no page cache ({@code vma_is_fsdax}).
     *
     * @param inode  the file
     * @param pgoff  the file page the VMA starts at
     * @param shared {@code MAP_SHARED}; else private copy-on-write
     */
    record Dax(Inode inode, long pgoff, boolean shared) implements VmaBacking {
    }

    /**
     * A range of a PCI function's BAR, mapped as {@code vfio_pci_core_mmap} maps it ({@code VM_IO | VM_PFNMAP},
     * always shared): CPU loads and stores reach the BAR's registers or memory, no page of host memory is behind it,
     * and it cannot be pinned.
     *
     * @param function the function
     * @param bar      the BAR index
     * @param offset   the byte of the BAR the VMA starts at, page aligned ({@code vm_pgoff} in bytes)
     */
    record PciBar(PciFunction function, int bar, long offset) implements VmaBacking {
        public PciBar {
            ErrnoException.requireNonNull(function, "BAR mapping: PCI function");
        }
    }
}
