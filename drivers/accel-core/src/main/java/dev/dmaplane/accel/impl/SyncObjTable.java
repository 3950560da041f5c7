package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.sync.SyncFile;
import dev.dmaplane.accel.sync.SyncObj;
import dev.dmaplane.accel.sync.SyncObjWait;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;

/**
 * A context's sync-object handles ({@code drm_file.syncobj_xa} and the ioctls of {@code drm_syncobj.c}): handles
 * from 1, the lowest free first, a table apart from the GEM handles. An unknown handle is {@code ENOENT}
 * ({@code drm_syncobj_find} failing), except for destroy, which answers {@code EINVAL} as
 * {@code drm_syncobj_destroy} does. Thread-safe.
 */
final class SyncObjTable {
    /** How long a kernel-side WAIT_FOR_SUBMIT lookup waits ({@code DRM_SYNCOBJ_WAIT_FOR_SUBMIT_TIMEOUT}: 5 s). */
    static final Duration SUBMIT_TIMEOUT = Duration.ofSeconds(5);

    private final String owner;
    private final TreeMap<Integer, SyncObj> handles = new TreeMap<>();

    SyncObjTable(String owner) {
        this.owner = owner;
    }

    /** {@code DRM_IOCTL_SYNCOBJ_CREATE}; {@code EINVAL} for flags other than CREATE_SIGNALED. */
    int create(int flags) {
        return install(SyncObj.create(owner + " syncobj", flags));
    }

    /** {@code drm_syncobj_get_handle}: a new handle for {@code obj} (also what FD_TO_HANDLE does). */
    synchronized int install(SyncObj obj) {
        ErrnoException.check(obj != null, Errno.EINVAL, owner + ": no sync object to install");
        int h = 1;
        for (int used : handles.keySet()) {
            if (used != h) {
                break;
            }
            h++;
        }
        handles.put(h, obj);
        return h;
    }

    /** {@code DRM_IOCTL_SYNCOBJ_DESTROY}: {@code EINVAL} for an unknown handle, as {@code drm_syncobj_destroy}. */
    synchronized void destroy(int handle) {
        ErrnoException.check(handles.remove(handle) != null, Errno.EINVAL, "SYNCOBJ_DESTROY of handle " + handle
                + ", which is not in " + owner + " (drm_syncobj_destroy)");
    }

    /** {@code drm_syncobj_find}: {@code ENOENT} for an unknown handle. */
    synchronized SyncObj lookup(int handle) {
        SyncObj s = handles.get(handle);
        if (s == null) {
            throw new ErrnoException(Errno.ENOENT, "no sync object with handle " + handle + " in " + owner);
        }
        return s;
    }

    /** {@code DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT} over handles; {@code EINVAL} for arrays of different lengths. */
    int await(int[] handles, long[] points, int flags, Duration timeout) {
        ErrnoException.check(handles != null && points != null && handles.length == points.length, Errno.EINVAL,
                owner + ": SYNCOBJ_WAIT with handles and points of different lengths");
        List<SyncObj> objs = new ArrayList<>();
        for (int h : handles) {
            objs.add(lookup(h));
        }
        return SyncObjWait.timelineWait(objs, points, flags, timeout);
    }

    /** {@code DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL} (point 0: {@code DRM_IOCTL_SYNCOBJ_SIGNAL}). */
    void signal(int handle, long point) {
        SyncObj s = lookup(handle);
        if (point == 0) {
            s.signal();
        } else {
            s.timelineSignal(point);
        }
    }

    /** {@code DRM_IOCTL_SYNCOBJ_TRANSFER}: a WAIT_FOR_SUBMIT lookup of the source waits up to 5 s. */
    void transfer(int src, long srcPoint, int dst, long dstPoint, int flags) {
        SyncObj from = lookup(src);
        lookup(dst).transferFrom(from, srcPoint, dstPoint, flags, SUBMIT_TIMEOUT);
    }

    /**
     * {@code drm_syncobj_export_sync_file}: a sync file of the fence of {@code point}; {@code EINVAL} when nothing
     * was submitted for it.
     */
    SyncFile exportSyncFile(int handle, long point) {
        return SyncFile.create(lookup(handle).findFence(point, 0, SUBMIT_TIMEOUT));
    }

    /** {@code drm_syncobj_import_sync_file_fence}: the file's fence replaces the fence (point 0) or becomes {@code point}. */
    void importSyncFile(int handle, long point, SyncFile file) {
        ErrnoException.check(file != null, Errno.EINVAL, owner + ": no sync file to import into handle " + handle);
        SyncObj s = lookup(handle);
        if (point == 0) {
            s.replaceFence(file.fence());
        } else {
            s.addPoint(file.fence(), point);
        }
    }

    synchronized int size() {
        return handles.size();
    }

    /** {@code drm_syncobj_release}: every handle dropped (context close). */
    synchronized void clear() {
        handles.clear();
    }
}
