package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.impl.FileMapper;

import java.util.Collection;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Set;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Consumer;

/**
 * A file's {@code i_mmap} under its {@code i_mmap_rwsem} ({@code struct address_space}): the VMAs mapping the file,
 * added and removed as {@code vma_link_file} and {@code unlink_file_vma} do, walked by
 * {@code unmap_mapping_range}; and, under the same lock, whether the file still has a name, since an unlinked file
 * lives on until its last mapping goes and is then evicted once.
 * <p>
 * In the inode's lock order this lock comes after {@code i_rwsem} and the {@code invalidate_lock}, before the address
 * spaces' page-table locks: {@link #unmap} calls the mappers with it held shared.
 */
final class Immap {
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    /** The VMAs mapping the file (identity set). */
    private final Set<FileMapper> mappers = Collections.newSetFromMap(new IdentityHashMap<>());
    /** The file as error messages name it: {@code inode 5 (/a)}. */
    private final String file;
    private boolean linked = true;
    /** Set once eviction is decided; no mapping may be added after. */
    private boolean evicting;

    Immap(String file) {
        this.file = file;
    }

    /** Whether the file still has a name. */
    boolean isLinked() {
        lock.readLock().lock();
        try {
            return linked;
        } finally {
            lock.readLock().unlock();
        }
    }

    /** How many VMAs map the file. */
    int count() {
        lock.readLock().lock();
        try {
            return mappers.size();
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Runs {@code action} on the mappings with the lock held shared: no mapping comes or goes meanwhile. */
    void whileStable(Consumer<Collection<FileMapper>> action) {
        lock.readLock().lock();
        try {
            action.accept(Collections.unmodifiableSet(mappers));
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * Atomically removes {@code remove} and adds {@code add}, as adding, removing, splitting or trimming a VMA does;
     * truncate never sees the file half unmapped. Before anything changes, {@code admit} sees a non-empty {@code add}
     * under the lock and may refuse it by throwing.
     *
     * @return whether the file is now unlinked and unmapped for the first time: the caller evicts it
     * @throws ErrnoException {@code ENOENT} when {@code add} is not empty and the file is being evicted
     */
    boolean replace(Collection<? extends FileMapper> remove, Collection<? extends FileMapper> add,
                    Consumer<Collection<? extends FileMapper>> admit) {
        lock.writeLock().lock();
        try {
            if (!add.isEmpty()) {
                if (evicting) {
                    throw new ErrnoException(Errno.ENOENT, file + " was unlinked and evicted");
                }
                admit.accept(add);
            }
            mappers.removeAll(remove);
            mappers.addAll(add);
            return decideEviction();
        } finally {
            lock.writeLock().unlock();
        }
    }

    /**
     * The name went away ({@code drop_nlink}).
     *
     * @return whether nothing maps the file: the caller evicts it
     */
    boolean unlink() {
        lock.writeLock().lock();
        try {
            linked = false;
            return decideEviction();
        } finally {
            lock.writeLock().unlock();
        }
    }

    private boolean decideEviction() {
        if (!linked && mappers.isEmpty() && !evicting) {
            evicting = true;
            return true;
        }
        return false;
    }

    /** {@code unmap_mapping_range}: every VMA drops its view of pages {@code [firstIndex, endIndex)}. */
    void unmap(long firstIndex, long endIndex, boolean evenCows) {
        lock.readLock().lock();
        try {
            for (FileMapper m : mappers) {
                m.unmapFilePages(firstIndex, endIndex, evenCows);
            }
        } finally {
            lock.readLock().unlock();
        }
    }
}
