package dev.dmaplane.fs.impl;

import dev.dmaplane.fs.Inode;

import java.util.Collection;
import java.util.Objects;
import java.util.function.LongConsumer;

/**
 * The {@code address_space} operations of an {@link Inode} that only the mm layer calls ({@code filemap_fault},
 * {@code set_page_dirty_lock}, {@code i_mmap} upkeep), kept out of the exported file-system API. {@code Inode} hands
 * its implementation over once, when the class initialises, so every inode passed here already has it.
 */
public final class InodePages {
    /** What {@code Inode} implements for the mm layer; each method is documented on {@code Inode}. */
    public interface Ops {
        void fault(Inode inode, long index, boolean write, LongConsumer install);

        void checkPagesInside(Inode inode, long firstIndex, long endIndex);

        void setPageDirty(Inode inode, long index, long pfn);

        void addMapper(Inode inode, FileMapper mapper);

        void removeMapper(Inode inode, FileMapper mapper);

        void replaceMappers(Inode inode, Collection<? extends FileMapper> remove, Collection<? extends FileMapper> add);
    }

    private static volatile Ops ops;

    private InodePages() {
    }

    /** Called once by {@code Inode}'s class initialisation. */
    public static void install(Ops implementation) {
        Objects.requireNonNull(implementation, "implementation");
        if (ops != null) {
            throw new IllegalStateException("the inode page operations are already installed");
        }
        ops = implementation;
    }

    /**
     * Resolves a page fault on page {@code index} ({@code filemap_fault} / {@code dax_iomap_fault}); {@code install}
     * runs with the invalidate lock held shared and must keep or drop the frame's reference.
     */
    public static void fault(Inode inode, long index, boolean write, LongConsumer install) {
        ops.fault(inode, index, write, install);
    }

    /** {@code EFAULT} (SIGBUS) unless every page in {@code [firstIndex, endIndex)} lies before the end of the file. */
    public static void checkPagesInside(Inode inode, long firstIndex, long endIndex) {
        ops.checkPagesInside(inode, firstIndex, endIndex);
    }

    /** Marks page {@code index} dirty if frame {@code pfn} still caches it ({@code set_page_dirty_lock}). */
    public static void setPageDirty(Inode inode, long index, long pfn) {
        ops.setPageDirty(inode, index, pfn);
    }

    /** Adds a new mapping to {@code i_mmap} ({@code vma_link_file}). */
    public static void addMapper(Inode inode, FileMapper mapper) {
        ops.addMapper(inode, mapper);
    }

    /** Removes a mapping from {@code i_mmap}; may evict an unlinked inode. */
    public static void removeMapper(Inode inode, FileMapper mapper) {
        ops.removeMapper(inode, mapper);
    }

    /** Atomically replaces mappings in {@code i_mmap}, as splitting or trimming a VMA does. */
    public static void replaceMappers(Inode inode, Collection<? extends FileMapper> remove,
                                      Collection<? extends FileMapper> add) {
        ops.replaceMappers(inode, remove, add);
    }
}
