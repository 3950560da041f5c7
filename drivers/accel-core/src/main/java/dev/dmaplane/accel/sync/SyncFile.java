package dev.dmaplane.accel.sync;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.Fences;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvUsage;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;

/**
 * A {@code struct sync_file} ({@code drivers/dma-buf/sync_file.c}): one fence, possibly a container of several,
 * wrapped as a file-like object user space can pass around, merge and poll; and the dma-buf ioctls that move fences
 * between a sync file and a buffer's reservation ({@code DMA_BUF_IOCTL_EXPORT_SYNC_FILE} and
 * {@code DMA_BUF_IOCTL_IMPORT_SYNC_FILE} of {@code drivers/dma-buf/dma-buf.c}). Immutable.
 */
public final class SyncFile {
    /** {@code DMA_BUF_SYNC_READ}. */
    public static final int DMA_BUF_SYNC_READ = 1;
    /** {@code DMA_BUF_SYNC_WRITE}. */
    public static final int DMA_BUF_SYNC_WRITE = 2;
    /** {@code DMA_BUF_SYNC_RW}. */
    public static final int DMA_BUF_SYNC_RW = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;

    private final String name;
    private final Fence fence;

    private SyncFile(String name, Fence fence) {
        this.name = name;
        this.fence = fence;
    }

    /** {@code sync_file_create}: a sync file holding {@code fence}. {@code EINVAL} for null. */
    public static SyncFile create(Fence fence) {
        ErrnoException.check(fence != null, Errno.EINVAL, "sync_file_create: fence is null");
        return new SyncFile("", fence);
    }

    /**
     * {@code SYNC_IOC_MERGE}: a new sync file named {@code name} that signals when both have, holding the fences of
     * both as {@code dma_fence_unwrap_merge} collects them: containers flattened, one fence per context (the
     * later), signalled ones dropped; a signalled stub if none is left.
     */
    public static SyncFile merge(String name, SyncFile a, SyncFile b) {
        ErrnoException.check(a != null && b != null, Errno.EINVAL, "sync_file_merge: a sync file is null");
        List<Fence> all = new ArrayList<>(Fences.unwrap(a.fence));
        all.addAll(Fences.unwrap(b.fence));
        return new SyncFile(name == null ? "" : name, unwrapMerge(all));
    }

    /** {@code dma_fence_unwrap_merge}: pending fences, one per context, as one fence. */
    static Fence unwrapMerge(Collection<Fence> fences) {
        List<Fence> kept = new ArrayList<>();
        for (Fence f : fences) {
            if (f.isSignaled()) {
                continue;
            }
            int same = -1;
            for (int i = 0; i < kept.size(); i++) {
                if (kept.get(i).context() == f.context()) {
                    same = i;
                }
            }
            if (same < 0) {
                kept.add(f);
            } else if (f.isLater(kept.get(same))) {
                kept.set(same, f);
            }
        }
        return kept.size() == 1 ? kept.getFirst() : Fences.all(kept);
    }

    public String name() {
        return name;
    }

    /** {@code sync_file_get_fence}: the fence this file holds. */
    public Fence fence() {
        return fence;
    }

    /** The fences the file stands for (the container's components, or the one fence). */
    public List<Fence> fences() {
        return Fences.unwrap(fence);
    }

    /** The {@code status} of {@code SYNC_IOC_FILE_INFO}: 1 signalled, 0 active, a negative errno on error. */
    public int status() {
        return fence.status();
    }

    /** {@code SYNC_IOC_FILE_INFO}. */
    public SyncFileInfo info() {
        List<SyncFenceInfo> infos = new ArrayList<>();
        for (Fence f : fences()) {
            infos.add(new SyncFenceInfo(f.context().timelineName(), f.context().driverName(), f.status(),
                    f.timestampNanos().orElse(0)));
        }
        return new SyncFileInfo(name, status(), infos);
    }

    /**
     * {@code DMA_BUF_IOCTL_EXPORT_SYNC_FILE} ({@code dma_buf_export_sync_file}): a sync file of the fences of
     * {@code buf}'s reservation that an access of kind {@code flags} must wait for: {@link #DMA_BUF_SYNC_WRITE}
     * those of every reader and writer, {@link #DMA_BUF_SYNC_READ} alone those of writers
     * ({@code dma_resv_usage_rw}); a signalled stub when there are none. {@code EINVAL} for flags outside
     * {@link #DMA_BUF_SYNC_RW} or with neither bit.
     */
    public static SyncFile exportFromDmaBuf(DmaBuf buf, int flags) {
        ErrnoException.check(buf != null, Errno.EINVAL, "dma_buf_export_sync_file: dma-buf is null");
        checkRwFlags("dma_buf_export_sync_file", flags);
        boolean write = (flags & DMA_BUF_SYNC_WRITE) != 0;
        List<Fence> fences = buf.resv().fences(ResvUsage.forAccess(write));
        return new SyncFile("dmabuf " + buf.ino(), unwrapMerge(fences));
    }

    /**
     * {@code DMA_BUF_IOCTL_IMPORT_SYNC_FILE} ({@code dma_buf_import_sync_file}): adds every fence of {@code file}
     * to {@code buf}'s reservation, at {@link ResvUsage#WRITE} with {@link #DMA_BUF_SYNC_WRITE}, else at
     * {@link ResvUsage#READ}, taking and dropping the reservation lock (the caller must not hold it). {@code EINVAL}
     * for flags outside {@link #DMA_BUF_SYNC_RW} or with neither bit; the reservation's errors (ENOMEM for too
     * many fences) leave it unchanged.
     */
    public static void importIntoDmaBuf(DmaBuf buf, SyncFile file, int flags) {
        ErrnoException.check(buf != null, Errno.EINVAL, "dma_buf_import_sync_file: dma-buf is null");
        ErrnoException.check(file != null, Errno.EINVAL, "dma_buf_import_sync_file: sync file is null");
        checkRwFlags("dma_buf_import_sync_file", flags);
        ResvUsage usage = (flags & DMA_BUF_SYNC_WRITE) != 0 ? ResvUsage.WRITE : ResvUsage.READ;
        List<Fence> fences = file.fences();
        Reservation resv = buf.resv();
        resv.lock();
        try {
            resv.reserveFences(fences.size());
            for (Fence f : fences) {
                resv.addFence(f, usage);
            }
        } finally {
            resv.unlock();
        }
    }

    private static void checkRwFlags(String what, int flags) {
        ErrnoException.check((flags & ~DMA_BUF_SYNC_RW) == 0, Errno.EINVAL, what + ": flags 0x"
                + Integer.toHexString(flags) + " has bits other than DMA_BUF_SYNC_RW");
        ErrnoException.check((flags & DMA_BUF_SYNC_RW) != 0, Errno.EINVAL, what + ": flags 0x"
                + Integer.toHexString(flags) + " has neither DMA_BUF_SYNC_READ nor DMA_BUF_SYNC_WRITE");
    }

    @Override
    public String toString() {
        return "sync_file '" + name + "' " + fence;
    }
}
