package dev.dmaplane.vfio.impl;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.vfio.VfioUser;
import dev.dmaplane.vfio.iommufd.IommufdAccess;
import dev.dmaplane.vfio.impl.iommufd.IommufdCtx;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** A process's VFIO descriptors ({@code files_struct}) and its memlock accounting ({@code mm->locked_vm}). */
final class UserImpl implements VfioUser {
    private static final Logger LOG = LoggerFactory.getLogger(UserImpl.class);
    /** The first descriptor handed out: 0, 1 and 2 are the standard streams. */
    private static final int FIRST_FD = 3;

    private final VfioCore core;
    private final AddressSpace mm;
    private final Map<Integer, VfioFile> fds = new TreeMap<>();
    private long memlockLimit;
    private long lockedBytes;
    private boolean closed;

    UserImpl(VfioCore core, AddressSpace mm, long memlockLimit) {
        this.core = core;
        this.mm = mm;
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
        buf.get();
        return install(new DmaBufFile(buf)); // a refused install releases the file, which drops the reference
    }

    /** Gives {@code file} the lowest free descriptor ({@code fd_install}); a closed user releases it at once. */
    synchronized int install(VfioFile file) {
        if (closed) {
            file.release();
            throw new ErrnoException(Errno.EBADF, "the process of " + mm.name() + " has exited");
        }
        int fd = FIRST_FD;
        while (fds.containsKey(fd)) {
            fd++;
        }
        fds.put(fd, file);
        return fd;
    }

    /** The open file behind {@code fd} ({@code fdget}). */
    synchronized VfioFile file(int fd) {
        VfioFile f = fds.get(fd);
        if (f == null) {
            throw new ErrnoException(Errno.EBADF, "fd " + fd + " is not open");
        }
        return f;
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
        VfioFile f;
        synchronized (this) {
            f = fds.remove(fd);
        }
        if (f == null) {
            throw new ErrnoException(Errno.EBADF, "close: fd " + fd + " is not open");
        }
        f.release();
    }

    @Override
    public synchronized boolean isOpen(int fd) {
        return fds.containsKey(fd);
    }

    /** Closes descriptors in reverse order (devices before groups before containers, as they were opened). */
    @Override
    public void close() {
        List<VfioFile> open;
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            open = new ArrayList<>(fds.values());
            fds.clear();
        }
        for (int i = open.size() - 1; i >= 0; i--) {
            try {
                open.get(i).release();
            } catch (RuntimeException e) {
                LOG.error("{}: releasing {} at exit failed", mm.name(), open.get(i), e);
            }
        }
        core.userClosed(this);
    }

    @Override
    public String toString() {
        return "vfio user " + mm.name();
    }
}
