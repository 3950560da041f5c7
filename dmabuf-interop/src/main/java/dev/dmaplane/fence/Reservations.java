package dev.dmaplane.fence;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.List;

/**
 * Locking many reservations at once, the way {@code drm_exec} and method 1 of
 * {@code Documentation/locking/ww-mutex-design.rst} do it: take them in list order; on {@code EDEADLK} drop every
 * one taken, {@code lockSlow} the contended one, and start over with it already held.
 */
public final class Reservations {
    private Reservations() {
    }

    /**
     * Locks every reservation of {@code objs} under {@code ctx}, which must hold nothing yet (EINVAL otherwise);
     * returns how many times it had to back off. On any other failure ({@code EALREADY} for an object listed
     * twice, as the design document's method 1 reports it, or misuse) everything taken is unlocked and the
     * failure is rethrown. Does not call {@link WwAcquireContext#done()}: the caller may lock more.
     */
    public static int lockAll(List<Reservation> objs, WwAcquireContext ctx) {
        ErrnoException.check(ctx != null, Errno.EINVAL, "acquire context is null");
        List<Reservation> list = checked(objs);
        ErrnoException.check(ctx.acquired() == 0, Errno.EINVAL, ctx + " already holds " + ctx.acquired()
                + " lock(s); lockAll backs off by dropping all of them, so it must start with none");
        int backoffs = 0;
        Reservation slowLocked = null;
        for (;;) {
            List<Reservation> held = new ArrayList<>(list.size());
            if (slowLocked != null) {
                held.add(slowLocked);
            }
            Reservation skip = slowLocked;
            Reservation current = null;
            try {
                for (Reservation r : list) {
                    if (r == skip) {
                        skip = null;
                        continue;
                    }
                    current = r;
                    r.lock(ctx);
                    held.add(r);
                }
                return backoffs;
            } catch (ErrnoException e) {
                for (int i = held.size() - 1; i >= 0; i--) {
                    held.get(i).unlock();
                }
                if (e.errno() != Errno.EDEADLK || current == null) {
                    throw e;
                }
                backoffs++;
                current.lockSlow(ctx);
                slowLocked = current;
            }
        }
    }

    /** Unlocks every reservation of {@code objs}, last first; EPERM, with nothing unlocked, unless all are held. */
    public static void unlockAll(List<Reservation> objs) {
        List<Reservation> list = checked(objs);
        for (Reservation r : list) {
            ErrnoException.check(r.isHeldByCurrentThread(), Errno.EPERM, "unlockAll: " + r + " is not held by "
                    + Thread.currentThread().getName());
        }
        for (int i = list.size() - 1; i >= 0; i--) {
            list.get(i).unlock();
        }
    }

    private static List<Reservation> checked(List<Reservation> objs) {
        ErrnoException.check(objs != null, Errno.EINVAL, "reservation list is null");
        for (int i = 0; i < objs.size(); i++) {
            ErrnoException.check(objs.get(i) != null, Errno.EINVAL, "reservation " + i + " of " + objs.size()
                    + " is null");
        }
        return List.copyOf(objs);
    }
}
