package dev.dmaplane.vfio;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.vfio.iommufd.IommufdAccess;
import org.osgi.annotation.versioning.ProviderType;

import java.lang.foreign.MemorySegment;

/**
 * A user-space process's side of VFIO: its address space, its {@code RLIMIT_MEMLOCK} and {@code locked_vm}, and its
 * file descriptors of VFIO files (containers, groups, devices), driven with {@code ioctl}, {@code pread},
 * {@code pwrite} and {@code mmap} over the byte layouts of {@code include/uapi/linux/vfio.h} ({@link VfioLayouts},
 * {@link VfioUapi}). {@link VfioContainer}, {@link VfioGroup} and {@link VfioDevice} do the same with records.
 * The descriptors are numbers of the process's one table, {@link AddressSpace#files()} ({@code files_struct}), shared
 * with every other file of the process: a dma-buf fd VFIO returns is one {@code dma_buf_get(fd)} resolves there, and
 * a file installed by another subsystem is a file of the wrong kind to VFIO. An operation on a descriptor that is not
 * open is {@code EBADF}.
 */
@ProviderType
public interface VfioUser extends AutoCloseable {
    /** The process's address space: where {@code MAP_DMA}'s {@code vaddr} and device mmaps live. */
    AddressSpace mm();

    /** {@code RLIMIT_MEMLOCK} in bytes. */
    long memlockLimit();

    /** {@code setrlimit(RLIMIT_MEMLOCK)}; pins already taken stay. {@code EINVAL} below 0. */
    void setMemlockLimit(long bytes);

    /** {@code mm->locked_vm} in bytes: what VFIO pinned and charged to this process. */
    long lockedBytes();

    /** {@code open("/dev/vfio/vfio")}: a new container. */
    int openContainer();

    /**
     * {@code open("/dev/vfio/N")}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENOENT} when no device of IOMMU group {@code group} is bound
     *                                           to vfio-pci, {@code EBUSY} when the group is open already
     */
    int openGroup(int group);

    /** {@code open("/dev/iommu")}: a new iommufd context ({@code dev.dmaplane.vfio.iommufd}). */
    int openIommufd();

    /**
     * {@code iommufd_access_create(iommufd_ctx_from_fd(fd), ops)}: an in-kernel user of the iommufd context behind
     * descriptor {@code iommufdFd}, as an emulated device's driver makes one when the user binds it to that context.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EBADF} for a descriptor that is not open, {@code EBADFD} for
     *                                           one that is not {@code /dev/iommu}, {@code EINVAL} for null ops
     */
    IommufdAccess iommufdAccess(int iommufdFd, IommufdAccess.Ops ops);

    /**
     * {@code open("/dev/vfio/devices/vfioX")}: the cdev of vfio-pci device {@code device} (its PCI name). Until
     * {@code VFIO_DEVICE_BIND_IOMMUFD} binds it to an iommufd, every other operation on it is {@code EINVAL}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENOENT} when {@code device} is not bound to vfio-pci,
     *                                           {@code EINVAL} for null
     */
    int openDevice(String device);

    /**
     * A descriptor of {@code inode} as {@code memfd_create} gives one: what {@code IOMMU_IOAS_MAP_FILE} maps.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for null
     */
    int openMemfd(Inode inode);

    /** {@code eventfd(0, EFD_NONBLOCK)}: a descriptor to hand to {@code VFIO_DEVICE_SET_IRQS}. */
    int openEventfd();

    /**
     * The counter behind eventfd {@code fd}, to wait on with a bound ({@link IrqTrigger#await}).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EBADF} when not open, {@code EINVAL} for another file
     */
    IrqTrigger eventfd(int fd);

    /**
     * {@code dma_buf_get(fd)}: the dma-buf behind descriptor {@code fd} (one {@code VFIO_DEVICE_FEATURE_DMA_BUF}
     * returned), with a new reference the caller must {@link DmaBuf#put}; how another driver imports it.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EBADF} when not open, {@code EINVAL} for another file
     */
    DmaBuf dmaBuf(int fd);

    /**
     * {@code dma_buf_fd}: a descriptor for a dma-buf another driver exported to this process (a heap's buffer, a GPU
     * driver's PRIME export), holding a new reference that closing the descriptor drops.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for null, {@code EBADF} for a released buffer or a
     *                                           process that exited
     */
    int installDmaBuf(DmaBuf buf);

    /** {@code ioctl(fd, cmd, arg)} with a pointer to the user's bytes; returns the ioctl's value. */
    long ioctl(int fd, int cmd, MemorySegment arg);

    /** {@code ioctl(fd, cmd, value)} with a number. */
    long ioctl(int fd, int cmd, long value);

    /** {@code pread(fd, dst, dst.byteSize(), offset)}: bytes read. */
    long pread(int fd, MemorySegment dst, long offset);

    /** {@code pwrite(fd, src, src.byteSize(), offset)}: bytes written. */
    long pwrite(int fd, MemorySegment src, long offset);

    /** {@code mmap(NULL, length, prot, MAP_SHARED, fd, offset)}: the address in {@link #mm()}. */
    long mmap(int fd, long offset, long length, int prot);

    /** {@code close(fd)}: any file of the process's table, VFIO's or another subsystem's. */
    void close(int fd);

    /** Whether {@code fd} is open. */
    boolean isOpen(int fd);

    /**
     * Closes every descriptor this user installed, newest first; the process's other files stay until its address
     * space closes ({@code exit_files}), which closes VFIO's too. Each file is released once either way.
     */
    @Override
    void close();
}
