package dev.dmaplane.vfio.impl;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufHandle;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.resource.UContext;
import dev.dmaplane.resource.UObject;
import dev.dmaplane.vfio.VfioUser;
import dev.dmaplane.vfio.iommufd.IommufdAccess;
import dev.dmaplane.vfio.impl.iommufd.IommufdCtx;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A process's VFIO side: its descriptors, kept in the process's one table ({@code files_struct},
 * {@link AddressSpace#files()}) beside every other subsystem's, and its memlock accounting ({@code mm->locked_vm}).
 */
final class UserImpl implements VfioUser {
    private static final Logger LOG = LoggerFactory.getLogger(UserImpl.class);

    private final VfioCore core;
    private final AddressSpace mm;
    /** The process's one descriptor table, shared with every other subsystem ({@code current->files}). */
    private final UContext files;
    /** This user's VFIO files by descriptor, to find them without the table's lock. */
    private final Map<Integer, OpenFile> byFd = new ConcurrentHashMap<>();
    /** What this user installed, oldest first, for {@link #close()}. */
    private final List<UObject> installed = new ArrayList<>();
    private long memlockLimit;
    private long lockedBytes;
    private boolean closed;

    UserImpl(VfioCore core, AddressSpace mm, long memlockLimit) {
        this.core = core;
        this.mm = mm;
        this.files = mm.files();
        this.memlockLimit = memlockLimit;
    }

    @Override
    public AddressSpace mm() {
        return mm;
    }

    VfioCore core() {
        return core;
    }

    @Override
    public synchronized long memlockLimit() {
        return memlockLimit;
    }

    @Override
    public synchronized void setMemlockLimit(long bytes) {
        if (bytes < 0) {
            throw new ErrnoException(Errno.EINVAL, "setrlimit: RLIMIT_MEMLOCK " + bytes + " is negative");
        }
        memlockLimit = bytes;
    }

    @Override
    public synchronized long lockedBytes() {
        return lockedBytes;
    }

    /**
     * {@code vfio_lock_acct}: charges (positive) or returns (negative) {@code bytes} of {@code locked_vm}.
     *
     * @throws ErrnoException {@code ENOMEM} when a charge would pass {@code RLIMIT_MEMLOCK}; nothing is charged then
     */
    synchronized void lockAcct(long bytes) {
        if (bytes > 0 && lockedBytes + bytes > memlockLimit) {
            throw new ErrnoException(Errno.ENOMEM, String.format(
                    "vfio_lock_acct: RLIMIT_MEMLOCK (%d) exceeded: %d locked, %d more asked", memlockLimit,
                    lockedBytes, bytes));
        }
        lockedBytes += bytes;
    }

    @Override
    public int openContainer() {
        return install(new ContainerFile(this));
    }

    @Override
    public int openGroup(int group) {
        return install(core.openGroup(this, group));
    }

    @Override
    public int openIommufd() {
        IommufdCtx.Account account = new IommufdCtx.Account() {
            @Override
            public void lockAcct(long bytes) {
                UserImpl.this.lockAcct(bytes);
            }

            @Override
            public void pinned(long pages) {
                core.pinned(pages);
            }
        };
        return install(new IommufdCtx(mm.name(), mm, core.machine().iommu(), account, this::file));
    }

    @Override
    public IommufdAccess iommufdAccess(int iommufdFd, IommufdAccess.Ops ops) {
        ErrnoException.requireNonNull(ops, "iommufd_access_create: ops");
        return IommufdCtx.fromFile(file(iommufdFd), iommufdFd).createAccess(ops);
    }

    @Override
    public int openDevice(String device) {
        ErrnoException.requireNonNull(device, "open /dev/vfio/devices: device");
        return install(core.openCdev(this, device));
    }

    @Override
    public int openMemfd(Inode inode) {
        ErrnoException.requireNonNull(inode, "memfd: inode");
        return install(new MemfdFile(inode));
    }

    @Override
    public int openEventfd() {
        return install(new EventFdFile());
    }

    @Override
    public IrqTrigger eventfd(int fd) {
        if (file(fd) instanceof EventFdFile e) {
            return e.trigger();
        }
        throw new ErrnoException(Errno.EINVAL, "fd " + fd + " is not an eventfd but " + file(fd));
    }

    @Override
    public DmaBuf dmaBuf(int fd) {
        if (file(fd) instanceof DmaBufFile f) {
            f.buffer().get();
            return f.buffer();
        }
        throw new ErrnoException(Errno.EINVAL, "fd " + fd + " is not a dma-buf but " + file(fd));
    }

    @Override
    public int installDmaBuf(DmaBuf buf) {
        ErrnoException.requireNonNull(buf, "dma_buf_fd: buffer");
        requireLive();
        return track(DmaBufHandle.install(buf, files)); // a refused install leaves no reference behind
    }

    /**
     * {@code dma_buf_fd} for a buffer just exported to this process: the descriptor takes over the export's
     * reference; a refused install drops it, releasing the buffer.
     */
    int installExported(DmaBuf buf) {
        try {
            return installDmaBuf(buf);
        } finally {
            buf.put();
        }
    }

    /**
     * Gives {@code file} the lowest free descriptor of the process's table ({@code fd_install}); a refused install
     * (a closed user or table) releases the file at once.
     */
    int install(VfioFile file) {
        try {
            requireLive();
        } catch (ErrnoException e) {
            file.release();
            throw e;
        }
        OpenFile o = files.register(new OpenFile(file, this)); // a refusal releases it (RemoveReason.ABORT)
        byFd.put(o.handle(), o);
        if (o.isReleased()) { // closed through the table before it was indexed: no stale entry for a reused number
            byFd.remove(o.handle(), o);
        }
        return track(o);
    }

    private void requireLive() {
        synchronized (installed) {
            if (closed) {
                throw new ErrnoException(Errno.EBADF, "the process of " + mm.name() + " has exited");
            }
        }
    }

    /** Remembers {@code o} for {@link #close()}; a user that closed meanwhile closes it again at once. */
    private int track(UObject o) {
        int fd = o.handle();
        synchronized (installed) {
            if (!closed) {
                installed.removeIf(UObject::isDestroyed);
                installed.add(o);
                return fd;
            }
        }
        closeObject(o);
        throw new ErrnoException(Errno.EBADF, "the process of " + mm.name() + " has exited");
    }

    /** {@code o} was closed, by whatever path: it is no longer this user's. */
    void closed(OpenFile o) {
        byFd.remove(o.handle(), o);
    }

    /** The open file behind {@code fd} ({@code fdget}): a VFIO file, a dma-buf or another subsystem's file. */
    VfioFile file(int fd) {
        OpenFile mine = byFd.get(fd);
        if (mine != null) {
            return mine.file();
        }
        return switch (object(fd)) {
            case OpenFile o -> o.file();
            case DmaBufHandle h -> new DmaBufFile(h);
            case UObject other -> new ForeignFile(other);
        };
    }

    /** The object of the process's table at {@code fd}; {@code EBADF} when none is. */
    private UObject object(int fd) {
        try {
            return files.lookup(fd, UObject.class);
        } catch (ErrnoException e) {
            if (e.errno() == Errno.EINVAL) {
                throw new ErrnoException(Errno.EBADF, "fd " + fd + " is not open in the files of " + mm.name());
            }
            throw e;
        }
    }

    @Override
    public long ioctl(int fd, int cmd, MemorySegment arg) {
        return file(fd).ioctl(cmd, arg);
    }

    @Override
    public long ioctl(int fd, int cmd, long value) {
        return file(fd).ioctl(cmd, value);
    }

    @Override
    public long pread(int fd, MemorySegment dst, long offset) {
        ErrnoException.requireNonNull(dst, "pread buffer");
        return file(fd).read(dst, offset);
    }

    @Override
    public long pwrite(int fd, MemorySegment src, long offset) {
        ErrnoException.requireNonNull(src, "pwrite buffer");
        return file(fd).write(src, offset);
    }

    @Override
    public long mmap(int fd, long offset, long length, int prot) {
        return file(fd).mmap(offset, length, prot);
    }

    @Override
    public void close(int fd) {
        object(fd);
        try {
            files.destroy(fd);
        } catch (ErrnoException e) {
            if (e.errno() == Errno.EINVAL) { // closed by another thread since the look-up
                throw new ErrnoException(Errno.EBADF, "close: fd " + fd + " is not open in the files of " + mm.name());
            }
            throw e;
        }
    }

    @Override
    public boolean isOpen(int fd) {
        try {
            object(fd);
            return true;
        } catch (ErrnoException e) {
            return false;
        }
    }

    /**
     * Closes the descriptors this user installed, newest first (devices before groups before containers, as they
     * were opened); those closed already, through this user or through the table, are skipped.
     */
    @Override
    public void close() {
        List<UObject> open;
        synchronized (installed) {
            if (closed) {
                return;
            }
            closed = true;
            open = new ArrayList<>(installed);
            installed.clear();
        }
        for (int i = open.size() - 1; i >= 0; i--) {
            closeObject(open.get(i));
        }
        core.userClosed(this);
    }

    /**
     * Closes {@code o} if it still holds its descriptor: the table finds and removes the object itself in one step
     * ({@code file_close_fd}), so a number another thread closed and gave to a new file meanwhile keeps that file.
     */
    private void closeObject(UObject o) {
        try {
            if (files.state() == UContext.State.LIVE) {
                files.destroy(o);
            }
        } catch (RuntimeException e) {
            LOG.error("{}: closing {} at exit failed", mm.name(), o, e);
        }
    }

    @Override
    public String toString() {
        return "vfio user " + mm.name();
    }
}
