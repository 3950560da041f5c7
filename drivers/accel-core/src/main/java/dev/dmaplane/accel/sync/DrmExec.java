package dev.dmaplane.accel.sync;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.WwAcquireContext;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * {@code struct drm_exec} ({@code drivers/gpu/drm/drm_exec.c}): locks a set of reservations under one
 * {@link WwAcquireContext} of {@link Reservation#RESERVATION_WW_CLASS}. The body given to {@link #untilAllLocked}
 * locks objects with {@link #lockObj} or {@link #prepareObj}; when one of them meets contention
 * ({@code EDEADLK}), every lock is dropped, the contended object is locked with {@code lockSlow} and the body runs
 * again, as {@code drm_exec_until_all_locked} with {@code drm_exec_retry_on_contention} does. {@link #close}
 * ({@code drm_exec_fini}) unlocks everything. Belongs to the thread that created it, as its acquire context does.
 */
public final class DrmExec implements AutoCloseable {
    /** {@code DRM_EXEC_INTERRUPTIBLE_WAIT}: lock waits end with {@code EINTR} on interrupt. */
    public static final int INTERRUPTIBLE_WAIT = 1;
    /** {@code DRM_EXEC_IGNORE_DUPLICATES}: locking an object already locked here is not an error. */
    public static final int IGNORE_DUPLICATES = 1 << 1;

    private final int flags;
    private final WwAcquireContext ticket = new WwAcquireContext(Reservation.RESERVATION_WW_CLASS);
    private final List<Reservation> objects = new ArrayList<>();
    private Reservation contended;
    private Reservation prelocked;
    private boolean closed;

    /** {@code drm_exec_init}. {@code EINVAL} for unknown flags. */
    public DrmExec(int flags) {
        ErrnoException.check((flags & ~(INTERRUPTIBLE_WAIT | IGNORE_DUPLICATES)) == 0, Errno.EINVAL,
                "drm_exec_init: flags 0x" + Integer.toHexString(flags) + " has unknown bits");
        this.flags = flags;
    }

    /**
     * {@code drm_exec_until_all_locked}: runs {@code body} until it completes without contention; returns how many
     * times it had to start over. Any other failure is rethrown with the locks taken so far still held, for
     * {@link #close} to drop, as in the kernel.
     */
    public int untilAllLocked(Consumer<DrmExec> body) {
        ErrnoException.check(body != null, Errno.EINVAL, "drm_exec_until_all_locked: body is null");
        checkOpen("drm_exec_until_all_locked");
        int retries = 0;
        for (;;) {
            try {
                body.accept(this);
                return retries;
            } catch (ErrnoException e) {
                if (e.errno() != Errno.EDEADLK || contended == null) {
                    throw e;
                }
                retries++;
                lockContended();
            }
        }
    }

    /** {@code drm_exec_cleanup} and {@code drm_exec_lock_contended}: drop everything, then wait for the contended. */
    private void lockContended() {
        unlockAll();
        Reservation obj = contended;
        contended = null;
        if ((flags & INTERRUPTIBLE_WAIT) != 0) {
            obj.lockInterruptible(ticket);
        } else {
            obj.lockSlow(ticket);
        }
        objects.add(obj);
        prelocked = obj;
    }

    /**
     * {@code drm_exec_lock_obj}: locks {@code obj} and keeps it in {@link #objects()}. On contention it records the
     * object and throws {@code EDEADLK}, which {@link #untilAllLocked} handles; an object locked twice is
     * {@code EALREADY} unless {@link #IGNORE_DUPLICATES}.
     */
    public void lockObj(Reservation obj) {
        ErrnoException.check(obj != null, Errno.EINVAL, "drm_exec_lock_obj: object is null");
        checkOpen("drm_exec_lock_obj");
        if (obj == prelocked) {
            prelocked = null;
            return;
        }
        try {
            if ((flags & INTERRUPTIBLE_WAIT) != 0) {
                obj.lockInterruptible(ticket);
            } else {
                obj.lock(ticket);
            }
        } catch (ErrnoException e) {
            if (e.errno() == Errno.EDEADLK) {
                contended = obj;
            } else if (e.errno() == Errno.EALREADY && (flags & IGNORE_DUPLICATES) != 0) {
                return;
            }
            throw e;
        }
        objects.add(obj);
    }

    /** {@code drm_exec_prepare_obj}: {@link #lockObj}, then room for {@code numFences} fences on it. */
    public void prepareObj(Reservation obj, int numFences) {
        lockObj(obj);
        obj.reserveFences(numFences);
    }

    /** {@code drm_exec_unlock_obj}: unlocks one object locked here; {@code EINVAL} for one that is not. */
    public void unlockObj(Reservation obj) {
        ErrnoException.check(objects.contains(obj), Errno.EINVAL, "drm_exec_unlock_obj: " + obj
                + " is not locked by this drm_exec");
        objects.remove(obj);
        if (obj == prelocked) {
            prelocked = null;
        }
        obj.unlock();
    }

    /** The objects locked, in locking order ({@code drm_exec_for_each_locked_object}). */
    public List<Reservation> objects() {
        return List.copyOf(objects);
    }

    /** {@code drm_exec_fini}: unlocks every object and ends the acquire context. Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        unlockAll();
        prelocked = null;
        closed = true;
        ticket.close();
    }

    private void unlockAll() {
        for (int i = objects.size() - 1; i >= 0; i--) {
            objects.get(i).unlock();
        }
        objects.clear();
    }

    private void checkOpen(String what) {
        ErrnoException.check(!closed, Errno.EINVAL, what + " after drm_exec_fini");
    }
}
