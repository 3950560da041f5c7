package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.impl.FileMapper;

import java.util.Collection;

import static dev.dmaplane.fs.Inode.F_SEAL_FUTURE_WRITE;
import static dev.dmaplane.fs.Inode.F_SEAL_GROW;
import static dev.dmaplane.fs.Inode.F_SEAL_SEAL;
import static dev.dmaplane.fs.Inode.F_SEAL_SHRINK;
import static dev.dmaplane.fs.Inode.F_SEAL_WRITE;

/**
 * A memfd's seals ({@code info->seals} of a shmem inode, added by {@code memfd_add_seals} in {@code mm/memfd.c}):
 * the changes of size and contents the file refuses from then on, each refused with {@code EPERM} where shmem
 * checks it ({@code shmem_setattr}, {@code shmem_write_begin}, {@code shmem_fallocate}, {@code mapping_map_writable}).
 * Seals are never removed. Written with the inode's {@code i_rwsem} held exclusively and its {@code i_mmap} stable;
 * read without a lock.
 */
final class MemfdSeals {
    private static final int ALL = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;
    private static final int WRITE_SEALS = F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;

    /** The file as error messages name it: its path. */
    private final String path;
    private volatile int seals;

    MemfdSeals(String path) {
        this.path = path;
    }

    /** The seals set ({@code memfd_get_seals}). */
    int get() {
        return seals;
    }

    /**
     * Refuses seal bits outside {@code F_SEAL_*} before any lock is taken.
     *
     * @throws ErrnoException {@code EINVAL} naming the unknown bits
     */
    void checkKnown(int newSeals) {
        ErrnoException.check((newSeals & ~ALL) == 0, Errno.EINVAL,
                "unknown seal bits 0x" + Integer.toHexString(newSeals & ~ALL) + " for " + path);
    }

    /**
     * {@code memfd_add_seals}: adds {@code newSeals}, with {@code mappings} the file's {@code i_mmap}, which must not
     * change meanwhile.
     *
     * @throws ErrnoException {@code EPERM} once {@code F_SEAL_SEAL} is set, {@code EBUSY} for a new
     *                        {@code F_SEAL_WRITE} while a shared mapping may write the file
     *                        ({@code mapping_deny_writable}); nothing changes then
     */
    void add(int newSeals, Collection<FileMapper> mappings) {
        ErrnoException.check((seals & F_SEAL_SEAL) == 0, Errno.EPERM, path + " is sealed against new seals (F_SEAL_SEAL)");
        if ((newSeals & F_SEAL_WRITE) != 0 && (seals & F_SEAL_WRITE) == 0) {
            long writable = mappings.stream().filter(FileMapper::sharedMayWrite).count();
            ErrnoException.check(writable == 0, Errno.EBUSY, "F_SEAL_WRITE on " + path + ": " + writable
                    + " shared mapping(s) that may write it exist");
        }
        seals |= newSeals;
    }

    /**
     * {@code shmem_write_begin}: a write of {@code len} bytes at {@code offset} to a file of {@code size} bytes is
     * refused under either write seal, and under {@code F_SEAL_GROW} if it would grow the file. Builds no message
     * unless it refuses: this is the data path.
     *
     * @throws ErrnoException {@code EPERM} as described
     */
    void checkWrite(long offset, long len, long size) {
        int sealed = seals;
        if ((sealed & WRITE_SEALS) != 0) {
            throw new ErrnoException(Errno.EPERM, "write to " + path + ", which is sealed against writes");
        }
        if ((sealed & F_SEAL_GROW) != 0 && offset + len > size) {
            throw new ErrnoException(Errno.EPERM, "write of " + len + " bytes at " + offset + " would grow " + path
                    + ", which is sealed (F_SEAL_GROW)");
        }
    }

    /**
     * {@code shmem_setattr}: a size change from {@code oldSize} to {@code newSize} is refused under
     * {@code F_SEAL_SHRINK} if it shrinks the file and under {@code F_SEAL_GROW} if it grows it.
     *
     * @throws ErrnoException {@code EPERM} as described
     */
    void checkResize(long oldSize, long newSize) {
        ErrnoException.check(newSize >= oldSize || (seals & F_SEAL_SHRINK) == 0, Errno.EPERM,
                "truncate of " + path + " from " + oldSize + " to " + newSize + ": the file is sealed against shrinking");
        ErrnoException.check(newSize <= oldSize || (seals & F_SEAL_GROW) == 0, Errno.EPERM,
                "truncate of " + path + " from " + oldSize + " to " + newSize + ": the file is sealed against growing");
    }

    /**
     * {@code shmem_fallocate}: punching a hole is refused under either write seal.
     *
     * @throws ErrnoException {@code EPERM} as described
     */
    void checkPunchHole() {
        ErrnoException.check((seals & WRITE_SEALS) == 0, Errno.EPERM,
                "hole punch in " + path + ", which is sealed against writes");
    }

    /**
     * {@code mapping_map_writable}: new shared mappings that may write are refused under either write seal (the
     * seal came after the mapping's own check).
     *
     * @throws ErrnoException {@code EPERM} as described
     */
    void checkNewMappings(Collection<? extends FileMapper> add) {
        if ((seals & WRITE_SEALS) != 0 && add.stream().anyMatch(FileMapper::sharedMayWrite)) {
            throw new ErrnoException(Errno.EPERM, "shared mapping of " + path + " that may write it, while it is "
                    + "sealed against writes (seals 0x" + Integer.toHexString(seals) + ")");
        }
    }
}
